"""The OpenAPI document against the real server: schemathesis generates the requests.

For every operation of ``/v1/openapi.json``, schemathesis (an independent
tool) generates valid and invalid requests from the document; the real server
answers them on loopback, over a real store, with an admin key. Every answer
must be no 5xx, a documented status code and content type, and a body that
matches the documented schema; invalid requests must be refused (4xx).

Deterministic: the examples are derived from the document, not random
(``deterministic``, no example database), and bounded per operation. The
server runs in its own thread and event loop because schemathesis calls it
with blocking ``requests``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from fleettui.domain import AlertKind
from fleettui.server import start_server
from fleettui.server.app import OPENAPI
from fleettui.store import Store, open_store
from tests.test_http_api import NOW, _fill

EXAMPLES_PER_OPERATION = 12
#: an id per path that names something in the store (the generated ones rarely do)
KNOWN_IDS: dict[str, object] = {
    "/v1/devices/{id}": "tk1", "/v1/devices/{id}/commands": "tk1", "/v1/commands/{id}": 1,
    "/v1/sites/{id}": "tokyo", "/v1/sites/{id}/health": "tokyo",
    "/v1/sites/{id}/commands": "tokyo", "/v1/alerts/{id}/ack": 1,
    "/v1/webhooks/{id}/deliveries": "wh_fixed", "/v1/webhooks/{id}/replay": "wh_fixed",
    "/v1/webhooks/{id}": "wh_fixed",  # PATCH only (DELETE keeps its generated id)
}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]


class LiveServer:
    """The API served from a thread of its own, over a filled store, with an admin key."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.base_url = ""
        self.key = ""
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="api-under-test", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            store, runner = self.loop.run_until_complete(self._start())
        except BaseException as e:  # reported to the test, not lost in the thread
            self.error = e
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        self.loop.run_until_complete(store.close())
        self.loop.close()

    async def _start(self) -> tuple[Store, object]:
        store = await open_store(self.db)
        await _fill(store)
        await store.open_alert(target_kind="device", target="tk2", site_id="tokyo",
                               kind=AlertKind.OFFLINE, severity="warning", reason="timeout",
                               since=NOW, now=NOW, notify=True)
        await store.create_webhook_endpoint(
            "wh_fixed", url="https://hooks.example/api", events=["*"], secret="whsec_c2VjcmV0",
            enabled=True, hex_signature_header=None, timeout_s=5.0, now=NOW)
        self.key = (await store.create_api_key("admin", "schemathesis", NOW))[1]
        runner = await start_server(store, "127.0.0.1", 0, clock=lambda: NOW)
        self.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return store, runner

    def __enter__(self) -> LiveServer:
        self.thread.start()
        self.ready.wait()
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("api") / "fleet.db") as server:
        yield server


schema = schemathesis.openapi.from_dict(OPENAPI)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=EXAMPLES_PER_OPERATION,
    deterministic=True,
    database="none",
)


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, derandomize=True, deadline=None,
          database=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_document(case: schemathesis.Case,
                                                  live: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {live.key}"}
    response = case.call(base_url=live.base_url, headers=headers, timeout=10)
    case.validate_response(response, checks=CHECKS)
    known = KNOWN_IDS.get(case.path)
    positive = case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE
    if known is not None and positive and case.method != "DELETE":
        # generated ids rarely name anything: the same request about a thing that exists
        case.path_parameters = {**(case.path_parameters or {}), "id": known}
        response = case.call(base_url=live.base_url, headers=headers, timeout=10)
        case.validate_response(response, checks=CHECKS)
