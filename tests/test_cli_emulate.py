"""``fleettui emulate`` as a user runs it: a real process, its config, pyzk, its control API."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from zk import ZK
from zk.exception import ZKNetworkError

from tests.conftest import loopback


def _start(*args: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fleettui", "emulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Ctrl+C"):
            return proc, lines
    proc.wait()
    raise AssertionError("emulator exited before it was ready:\n" + "\n".join(lines))


@pytest.fixture
def running_fleet(tmp_path: Path) -> Iterator[tuple[dict, str, list[str]]]:
    """The README's fleet (14 sites, 62 devices, a few sick) on its own addresses."""
    config = tmp_path / "fleet.toml"
    proc, lines = _start(
        "--sites", "14", "--devices", "62", "--sick", "--config-out", str(config),
        "--base-address", loopback(240, 1), "--port", "0", "--seed", "7",
    )
    try:
        url = next(m.group(1) for ln in lines if (m := re.search(r"(http://\S+)/devices", ln)))
        yield tomllib.loads(config.read_text()), url, lines
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert "stopped" in out


def test_every_device_in_the_written_config_answers_pyzk(
    running_fleet: tuple[dict, str, list[str]], tmp_path: Path
) -> None:
    config, _url, lines = running_fleet
    assert len(config["sites"]) == 14 and len(config["devices"]) == 62
    assert oct((tmp_path / "fleet.toml").stat().st_mode & 0o777) == "0o600"
    sick = {m.group(1): m.group(2) for ln in lines if (m := re.match(r"\s+sick\s+(\S+): (.*)", ln))}
    offline = next(d for d, what in sick.items() if what.startswith("offline"))
    transports = set()
    for dev in config["devices"]:
        zk = ZK(dev["host"], port=dev["port"], timeout=3 if dev["id"] != offline else 0.3,
                password=dev["comm_key"], force_udp=dev["transport"] == "udp", ommit_ping=True)
        if dev["id"] == offline:
            with pytest.raises(ZKNetworkError):
                zk.connect()
            continue
        conn = zk.connect()
        try:
            assert conn.get_serialnumber() == dev["serial"]
            conn.read_sizes()
            assert conn.users > 0
            assert len(conn.get_users()) == conn.users
        finally:
            conn.disconnect()
        transports.add(dev["transport"])
    assert transports == {"tcp", "udp"}


def test_control_api_turns_a_device_offline_and_back(
    running_fleet: tuple[dict, str, list[str]],
) -> None:
    config, url, _lines = running_fleet
    dev = next(d for d in config["devices"] if d["transport"] == "tcp" and d["comm_key"] == 0)

    def client(timeout: float) -> ZK:
        return ZK(dev["host"], port=dev["port"], timeout=timeout, ommit_ping=True)

    r = httpx.put(f"{url}/devices/{dev['id']}/faults", json={"offline": True})
    assert r.status_code == 200 and r.json()["faults"] == {"offline": True}
    with pytest.raises(ZKNetworkError):
        client(0.3).connect()
    r = httpx.delete(f"{url}/devices/{dev['id']}/faults")
    assert r.status_code == 200 and r.json()["reachable"] is True
    conn = client(3).connect()
    assert conn.get_serialnumber() == dev["serial"]
    conn.disconnect()


def test_history_punches_are_in_the_devices(running_fleet: tuple[dict, str, list[str]]) -> None:
    _config, url, lines = running_fleet
    text = "\n".join(lines)
    history = int(re.search(r"history\s+(\d+) punches", text).group(1))  # type: ignore[union-attr]
    filler = int(re.search(r"\((\d+) old records added\)", text).group(1))  # type: ignore[union-attr]
    assert history > 0 and filler > 0
    devices = httpx.get(f"{url}/devices").json()["devices"]
    # every past punch and the nearly-full device's old records are stored
    # (live shift punches may add more while the test runs, never fewer)
    assert sum(d["records"] for d in devices) >= history + filler


def test_ctrl_c_with_connections_waiting_on_an_offline_device_is_quiet(
    tmp_path: Path,
) -> None:
    """Ctrl+C while clients wait on an offline device: one session whose request is held
    by the outage, one connection made during it. The emulator stops with its goodbye
    and nothing else: no asyncio "Exception in callback ... CancelledError" lines."""
    config = tmp_path / "fleet.toml"
    proc, lines = _start("--sites", "1", "--devices", "2", "--config-out", str(config),
                         "--base-address", loopback(242, 1), "--port", "0", "--seed", "3")
    try:
        url = next(m.group(1) for ln in lines if (m := re.search(r"(http://\S+)/devices", ln)))
        dev = next(d for d in tomllib.loads(config.read_text())["devices"]
                   if d["transport"] == "tcp")
        conn = ZK(dev["host"], port=dev["port"], timeout=0.3, password=dev["comm_key"],
                  ommit_ping=True).connect()
        r = httpx.put(f"{url}/devices/{dev['id']}/faults", json={"offline": True})
        assert r.status_code == 200
        with pytest.raises(ZKNetworkError):
            conn.get_firmware_version()  # held by the outage
        with pytest.raises(ZKNetworkError):
            ZK(dev["host"], port=dev["port"], timeout=0.3, ommit_ping=True).connect()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert out.strip().endswith("fleettui emulator stopped."), out
    assert "Traceback" not in out and "ERROR" not in out and "CancelledError" not in out, out


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleettui", "emulate", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ},
    )


def test_fewer_devices_than_sites_is_a_clear_error() -> None:
    r = _run("--sites", "5", "--devices", "3", "--port", "0")
    assert r.returncode == 2
    assert "every site needs at least one device" in r.stderr
    assert "Traceback" not in r.stderr


def test_control_api_refuses_non_loopback_addresses() -> None:
    r = _run("--control", "0.0.0.0:8470")
    assert r.returncode == 2
    assert "loopback" in r.stderr


def test_an_address_already_in_use_is_a_clear_error() -> None:
    import socket

    host = loopback(241, 1)
    with socket.socket() as s:
        s.bind((host, 0))
        s.listen()
        port = s.getsockname()[1]
        r = _run("--sites", "1", "--devices", "1", "--base-address", host,
                 "--port", str(port))
    assert r.returncode == 1
    assert "cannot open the device sockets" in r.stderr
    assert "Traceback" not in r.stderr


def test_help_documents_the_control_api() -> None:
    r = subprocess.run([sys.executable, "-m", "fleettui", "emulate", "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for route in ("GET    /devices", "PUT    /devices/{id}/faults", "POST   /devices/{id}/punches"):
        assert route in r.stdout
