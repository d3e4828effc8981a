"""``fleettui emulate --push N``: which devices become push terminals, the config it
writes for them, and a real emulator process dialing a recording push server
(``tests/push_server.py``, standing in for the product's listener)."""

from __future__ import annotations

import asyncio
import re
import sys
import tomllib
from pathlib import Path

from fleettui.emulator.fleetgen import config_text, generate_fleet, make_push
from tests.conftest import loopback
from tests.push_server import PushServer, until


def _blocks(text: str) -> dict[str, str]:
    """Each ``[[devices]]`` block of a config, by its id."""
    out = {}
    for block in text.split("[[devices]]")[1:]:
        m = re.search(r'^id = "([^"]+)"', block, re.M)
        assert m
        out[m.group(1)] = block
    return out


def test_push_devices_are_picked_from_the_seed_and_spread_over_sites() -> None:
    plain = generate_fleet(6, 40, seed=3)
    spec = generate_fleet(6, 40, seed=3)
    ids = make_push(spec, 12, seed=3)
    again = generate_fleet(6, 40, seed=3)
    assert make_push(again, 12, seed=3) == ids
    assert len(set(ids)) == 12
    assert len({spec.device(i).site_id for i in ids}) == 6  # every site has some
    assert {spec.device(i).push_profile for i in ids} == {
        "push2", "biodata", "legacy", "push2-resend"}
    before, after = _blocks(config_text(plain)), _blocks(config_text(spec))
    assert before.keys() == after.keys()
    for device_id, block in after.items():
        if device_id in ids:
            assert 'transport = "push"' in block
            assert not re.search(r"^(host|port) =", block, re.M)
            key = spec.device(device_id).config.comm_key  # given in its handshake
            assert bool(re.search(rf"^comm_key = {key}$", block, re.M)) == bool(key)
            assert bool(re.search(r"^comm_key =", block, re.M)) == bool(key)
            assert re.search(r'^serial = "', block, re.M) and re.search(r'^site = "', block, re.M)
            assert re.search(r'^name = ".+"', block, re.M)
        else:
            assert block == before[device_id]  # pull devices exactly as with --push 0


async def test_emulate_push_dials_the_server_and_writes_push_devices(tmp_path: Path) -> None:
    server = await PushServer().start()
    config = tmp_path / "fleet.toml"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleettui", "emulate", "--sites", "3", "--devices", "10",
        "--seed", "5", "--push", "4", "--push-server", server.url, "--push-delay", "0.05",
        "--base-address", loopback(241, 1), "--port", "0", "--history-days", "0",
        "--punch-rate", "300",
        "--config-out", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        out = []
        while not out or not out[-1].startswith("Ctrl+C"):
            line = (await proc.stdout.readline()).decode()
            assert line, "emulator exited:\n" + "".join(out)
            out.append(line)
        written = tomllib.loads(config.read_text())
        push = [d for d in written["devices"] if d.get("transport") == "push"]
        assert len(push) == 4 and len(written["devices"]) == 10
        for d in push:
            assert set(d) == {"id", "serial", "site", "name", "transport"}
        serials = {d["serial"] for d in push}
        await until(lambda: {s.query["SN"] for s in server.where("/iclock/getrequest")}
                    == serials, "every push terminal heartbeating")
        # live punches are uploaded, each line with its profile's field count
        await until(lambda: {s.query["SN"] for s in server.where("/iclock/cdata", "ATTLOG")}
                    == serials, "every push terminal uploading")
        counts = {len(ln.split("\t")) for ln in server.attlog()}
        assert counts <= {5, 7, 10} and len(counts) >= 2
    finally:
        proc.terminate()
        await proc.wait()
        await server.stop()
