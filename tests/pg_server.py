"""A real PostgreSQL server for the tests and the benchmarks: Debian's server binaries
(``initdb``, ``pg_ctl``) run in a temporary folder, on a free loopback port.

Nothing stands in for it: the store's tests run against this server as they
run against a real SQLite file. Each pytest-xdist worker starts its own
server on its own loopback address (``conftest.loopback``), so workers never
meet. PostgreSQL refuses to run as root: as root, the binaries run as the
``postgres`` user the Debian package makes.

Where the binaries are missing the PostgreSQL half of the suite is skipped,
saying how to install them; ``.ci/run`` installs them and sets
``FLEETTUI_TEST_POSTGRES=require``, which turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: the superuser the test cluster is made with (trust authentication, loopback only)
USER = "fleettui"


class NoPostgres(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def server_binaries() -> Path:
    """The folder of ``initdb`` and ``pg_ctl``: on the PATH, else Debian's newest
    ``/usr/lib/postgresql/<version>/bin``. NoPostgres when there is none."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda p: int(Path(p).parent.parent.name)
                      if Path(p).parent.parent.name.isdigit() else 0)
    if versions:
        return Path(versions[-1]).parent
    raise NoPostgres("PostgreSQL server binaries (initdb, pg_ctl) not found: "
                     "install Debian's postgresql package (apt-get install postgresql)")


def _as_server_user() -> tuple[list[str], int | None]:
    """The command prefix that runs a binary as a user PostgreSQL accepts, and that user's
    uid (None: this user)."""
    if os.geteuid() != 0:
        return [], None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as e:
        raise NoPostgres("running as root and there is no postgres user to run the "
                         "server as") from e
    return ["runuser", "-u", "postgres", "--"], entry.pw_uid


class PostgresServer:
    """One throwaway PostgreSQL cluster: made, started, stopped and removed."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.bin = server_binaries()
        self._prefix, self._uid = _as_server_user()
        self.folder = Path(tempfile.mkdtemp(prefix="fleettui-pg-"))
        self.data = self.folder / "data"
        self.started = False

    def url(self, database: str = "postgres") -> str:
        """The address of one database of this server, as ``--db`` takes it."""
        return f"postgresql://{USER}@{self.host}:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._prefix, *args], capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> PostgresServer:
        """Make the cluster and start the server; returns once it accepts connections."""
        if self._uid is not None:
            os.chown(self.folder, self._uid, -1)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", USER,
                  "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
        # a test server: durability is not what is tested here (the store's own
        # transactions are); fsync off keeps a new database per test cheap
        options = (f"-c listen_addresses={self.host} -c port={self.port}"
                   f" -c unix_socket_directories={self.folder}"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                   " -c max_connections=200 -c shared_buffers=32MB")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.folder / "server.log"), "-o", options, "-w", "-t", "60", "start")
        self.started = True
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its folder."""
        if self.started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                          "-w", "-t", "60", "stop")
            self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        """What the server wrote to its log (for a failing test's report)."""
        try:
            return (self.folder / "server.log").read_text()
        except OSError:
            return ""


@contextlib.contextmanager
def running(host: str, port: int) -> Iterator[PostgresServer]:
    """A started server for the length of a ``with`` block."""
    server = PostgresServer(host, port)
    try:
        yield server.start()
    finally:
        server.stop()

