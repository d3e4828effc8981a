"""A fast webhook receiver in its own process, for benches that drain the outbox.

Answers every ``POST /hook`` with 204 at once and counts it, and the distinct
``webhook-id`` headers (a delivery sent twice shows as ``count > unique``).
``GET /count`` says both; ``POST /reset`` starts again from zero (a new
database numbers its outbox from 1 again).

    python bench/_receiver.py [HOST]      # prints the port, then serves until killed

``start()`` runs it from a bench and returns a handle.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from aiohttp import web


async def _serve(host: str) -> None:
    count = 0
    ids: set[str] = set()

    async def hook(request: web.Request) -> web.Response:
        nonlocal count
        await request.read()
        count += 1
        ids.add(request.headers.get("webhook-id", ""))
        return web.Response(status=204)

    async def counted(request: web.Request) -> web.Response:
        return web.json_response({"count": count, "unique": len(ids)})

    async def reset(request: web.Request) -> web.Response:
        nonlocal count
        count = 0
        ids.clear()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", counted)
    app.router.add_post("/reset", reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


@dataclass
class Receiver:
    """A running receiver process."""

    proc: subprocess.Popen[str]
    base: str

    @property
    def url(self) -> str:
        """Where webhooks are to be sent."""
        return f"{self.base}/hook"

    def counts(self) -> tuple[int, int]:
        """Deliveries received so far, and how many distinct webhook-ids among them."""
        got = httpx.get(f"{self.base}/count", timeout=30).json()
        return int(got["count"]), int(got["unique"])

    def reset(self) -> None:
        """Forget every delivery received so far."""
        httpx.post(f"{self.base}/reset", timeout=30).raise_for_status()

    def stop(self) -> None:
        """End the process (SIGTERM), by its own id."""
        self.proc.terminate()
        self.proc.wait(timeout=30)


def start(host: str = "127.0.0.1") -> Receiver:
    """Start a receiver process on a free port of ``host``."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), host],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise SystemExit(f"the webhook receiver did not start ({proc.wait()})")
    return Receiver(proc, f"http://{host}:{int(line)}")


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"))
