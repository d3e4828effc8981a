"""Fleet generation: determinism, uniqueness, realism, and the TOML config it writes."""

from __future__ import annotations

import ipaddress
import re
import stat
import tomllib
from collections import defaultdict
from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fleettui.emulator.device import DeviceConfig
from fleettui.emulator.fleetgen import (
    CITIES,
    MODELS,
    DeviceSpec,
    Employee,
    FleetSpec,
    Shift,
    SiteSpec,
    config_text,
    generate_fleet,
    write_config,
)

SITE_KEYS = {"id", "name", "timezone", "address"}
DEVICE_KEYS = {"id", "serial", "site", "host", "port", "transport", "comm_key"}


@pytest.fixture(scope="module")
def fleet() -> FleetSpec:
    return generate_fleet(12, 150, seed=42)


@pytest.fixture(scope="module")
def big_fleet() -> FleetSpec:
    return generate_fleet(50, 2000, seed=5)


def test_same_seed_same_fleet() -> None:
    a = generate_fleet(8, 60, seed=9)
    b = generate_fleet(8, 60, seed=9)
    assert a == b
    assert config_text(a) == config_text(b)


def test_different_seed_different_fleet() -> None:
    assert config_text(generate_fleet(8, 60, seed=1)) != config_text(
        generate_fleet(8, 60, seed=2)
    )


def test_counts(fleet: FleetSpec) -> None:
    assert len(fleet.sites) == 12
    assert len(fleet.devices) == 150


def test_ids_serials_macs_hosts_unique(big_fleet: FleetSpec) -> None:
    for values in (
        [s.id for s in big_fleet.sites],
        [d.config.id for d in big_fleet.devices],
        [d.config.serial for d in big_fleet.devices],
        [d.config.mac for d in big_fleet.devices],
        [d.config.host for d in big_fleet.devices],
    ):
        assert len(set(values)) == len(values)


def test_site_ids_names_and_zones(big_fleet: FleetSpec) -> None:
    for site in big_fleet.sites:
        assert re.fullmatch(r"[a-z0-9-]+", site.id)
        assert site.id.startswith(site.kind + "-")
        assert site.name and site.address
        ZoneInfo(site.timezone)  # a real IANA zone
    assert big_fleet.sites[0].kind == "office"
    assert big_fleet.sites[0].name.startswith("Head Office")


def test_city_catalogue_is_worldwide_with_and_without_dst() -> None:
    assert len(CITIES) >= 30
    zones = {c.timezone for c in CITIES}
    for must in ("Africa/Casablanca", "Europe/Paris", "Asia/Kolkata", "Australia/Sydney"):
        assert must in zones
    from datetime import datetime

    def has_dst(zone: str) -> bool:
        tz = ZoneInfo(zone)
        jan = datetime(2024, 1, 15, 12, tzinfo=tz).utcoffset()
        jul = datetime(2024, 7, 15, 12, tzinfo=tz).utcoffset()
        return jan != jul

    assert sum(map(has_dst, zones)) >= 5
    assert sum(not has_dst(z) for z in zones) >= 5


def test_every_site_has_a_device(big_fleet: FleetSpec) -> None:
    for site in big_fleet.sites:
        assert big_fleet.devices_at(site.id)


def test_big_sites_get_more_devices(big_fleet: FleetSpec) -> None:
    by_kind: dict[str, list[int]] = defaultdict(list)
    for site in big_fleet.sites:
        by_kind[site.kind].append(len(big_fleet.devices_at(site.id)))

    def mean(kinds: tuple[str, ...]) -> float:
        counts = [n for k in kinds for n in by_kind[k]]
        return sum(counts) / len(counts)

    assert mean(("warehouse", "factory")) > mean(("store", "farm"))


def test_device_ids_follow_site_ids(fleet: FleetSpec) -> None:
    for site in fleet.sites:
        ids = [d.config.id for d in fleet.devices_at(site.id)]
        stem = "dev_" + site.id.replace("-", "_")
        assert ids == [f"{stem}_{i:02d}" for i in range(1, len(ids) + 1)]
        for d in fleet.devices_at(site.id):
            assert d.config.timezone == site.timezone


def test_serials_macs_and_comm_keys(big_fleet: FleetSpec) -> None:
    prefixes = {m.device_name: m.serial_prefix for m in MODELS.values()}
    for d in big_fleet.devices:
        c = d.config
        assert re.fullmatch(r"[A-Z0-9]{13}", c.serial)
        assert c.serial.startswith(prefixes[c.profile.device_name])
        assert re.fullmatch(r"00:17:61(:[0-9A-F]{2}){3}", c.mac)
        assert c.comm_key == 0 or 100_000 <= c.comm_key <= 999_999
        assert c.port == 4370
    keyed = sum(1 for d in big_fleet.devices if d.config.comm_key)
    assert 0.02 < keyed / len(big_fleet.devices) < 0.15


def test_models_and_transports(big_fleet: FleetSpec) -> None:
    udp = [d for d in big_fleet.devices if d.transport == "udp"]
    assert 0.05 < len(udp) / len(big_fleet.devices) < 0.16
    for d in big_fleet.devices:
        p = d.config.profile
        assert d.transport in ("tcp", "udp")
        if d.transport == "udp":
            assert (p.user_format, p.record_format, p.face_version) == (28, 16, None)
        else:
            assert (p.user_format, p.record_format) == (72, 40)
    names = {d.config.profile.device_name for d in big_fleet.devices}
    assert names == set(MODELS)
    tm616 = MODELS["TM-616"]
    assert tm616.firmware == "Ver 6.60 Jul  1 2019"


def test_hosts_are_consecutive_loopback_addresses(fleet: FleetSpec) -> None:
    hosts = [ipaddress.IPv4Address(d.config.host) for d in fleet.devices]
    assert str(hosts[0]) == "127.0.1.1"
    for h in hosts:
        assert h in ipaddress.IPv4Network("127.0.0.0/8")
        assert int(h) & 0xFF not in (0, 255)


def test_hosts_skip_network_and_broadcast_octets() -> None:
    spec = generate_fleet(1, 4, base_address="127.0.1.253")
    assert [d.config.host for d in spec.devices] == [
        "127.0.1.253",
        "127.0.1.254",
        "127.0.2.1",
        "127.0.2.2",
    ]


def test_host_overflow_and_bad_base_are_errors() -> None:
    with pytest.raises(ValueError, match=r"127\.255\.255\.254"):
        generate_fleet(1, 10, base_address="127.255.255.250")
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        generate_fleet(1, 2, base_address="10.0.0.1")
    with pytest.raises(ValueError, match="IPv4"):
        generate_fleet(1, 2, base_address="localhost")


def test_fewer_devices_than_sites_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one device"):
        generate_fleet(5, 4)


@pytest.mark.parametrize(("sites", "devices"), [(0, 5), (0, 0), (1, 0)])
def test_empty_fleets_are_errors(sites: int, devices: int) -> None:
    with pytest.raises(ValueError):
        generate_fleet(sites, devices)


def test_more_sites_than_cities_still_unique() -> None:
    spec = generate_fleet(60, 60, seed=4)
    assert len({s.id for s in spec.sites}) == 60
    assert len({s.name for s in spec.sites}) == 60


def test_one_site_one_device() -> None:
    spec = generate_fleet(1, 1)
    assert len(spec.sites) == 1 and len(spec.devices) == 1
    assert spec.employees_for_device(spec.devices[0].config.id)


def test_500_device_fleet(tmp_path: Path) -> None:
    spec = generate_fleet(30, 500, seed=11)
    assert len(spec.devices) == 500
    path = tmp_path / "fleet.toml"
    write_config(spec, path)
    data = tomllib.loads(path.read_text())
    assert len(data["devices"]) == 500


def test_employees(fleet: FleetSpec) -> None:
    cards: list[int] = []
    for site in fleet.sites:
        employees = fleet.employees[site.id]
        assert employees
        ids = [e.user_id for e in employees]
        assert len(set(ids)) == len(ids)
        assert all(i.isdigit() for i in ids)
        assert ids[0] == "1001"
        assert any(e.privilege == 14 for e in employees)
        assert sum(e.privilege == 14 for e in employees) <= max(1, len(employees) // 20)
        shift_names = {s.name for s in (e.shift for e in employees)}
        assert shift_names
        for e in employees:
            assert 8 <= len(str(e.card)) <= 10 and e.card <= 0xFFFFFFFF
            assert e.name and len(e.name.encode()) <= 24
            assert e.privilege in (0, 14)
        cards += [e.card for e in employees]
        cap = min(d.config.profile.users_cap for d in fleet.devices_at(site.id))
        assert len(employees) <= cap
    assert len(set(cards)) == len(cards)


def test_shifts_by_kind(big_fleet: FleetSpec) -> None:
    starts: dict[str, set[time]] = defaultdict(set)
    for site in big_fleet.sites:
        starts[site.kind] |= {e.shift.start for e in big_fleet.employees[site.id]}
    assert time(8, 0) in starts["office"]
    assert {time(6), time(14), time(22)} <= starts["warehouse"]
    assert {time(6), time(14), time(22)} <= starts["factory"]


def test_employees_per_device_range() -> None:
    spec = generate_fleet(1, 3, employees_per_device=(10, 10))
    assert len(spec.employees[spec.sites[0].id]) == 30
    with pytest.raises(ValueError):
        generate_fleet(1, 3, employees_per_device=(10, 5))


def test_enrolment_and_home_devices(fleet: FleetSpec) -> None:
    for d in fleet.devices:
        assert fleet.employees_for_device(d.config.id) is fleet.employees[d.site_id]
    for site in fleet.sites:
        site_devices = {d.config.id for d in fleet.devices_at(site.id)}
        homes = [fleet.home_device(site.id, e.user_id) for e in fleet.employees[site.id]]
        assert set(homes) <= site_devices
        if len(site_devices) > 1:
            assert len(set(homes)) > 1


def test_lookups(fleet: FleetSpec) -> None:
    site = fleet.sites[3]
    assert fleet.site(site.id) is site
    dev = fleet.devices[7]
    assert fleet.device(dev.config.id) is dev
    with pytest.raises(KeyError):
        fleet.device("nope")


def test_hand_built_spec_home_device_falls_back_to_a_stable_hash() -> None:
    site = SiteSpec("hq", "HQ", "UTC", "1 Main St", "office")
    devices = [
        DeviceSpec(DeviceConfig(id=f"d{i}", serial=f"S{i}"), "hq", "tcp") for i in range(3)
    ]
    shift = Shift("Day", time(8), time(17))
    people = [Employee(str(1001 + i), f"P{i}", 10_000_000 + i, shift) for i in range(30)]
    spec = FleetSpec([site], devices, {"hq": people})
    homes = [spec.home_device("hq", e.user_id) for e in people]
    assert homes == [spec.home_device("hq", e.user_id) for e in people]
    assert set(homes) <= {"d0", "d1", "d2"}


def test_config_round_trips_through_tomllib(fleet: FleetSpec, tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    write_config(fleet, path)
    text = path.read_text()
    assert text == config_text(fleet)
    assert text.startswith("#")
    assert "fleettui emulate" in text.splitlines()[0] and "seed 42" in text.splitlines()[0]
    data = tomllib.loads(text)
    assert set(data) == {"sites", "devices"}
    assert len(data["sites"]) == len(fleet.sites)
    for got, site in zip(data["sites"], fleet.sites, strict=True):
        assert set(got) == SITE_KEYS
        assert got == {
            "id": site.id,
            "name": site.name,
            "timezone": site.timezone,
            "address": site.address,
        }
    for got, dev in zip(data["devices"], fleet.devices, strict=True):
        assert set(got) == DEVICE_KEYS
        c = dev.config
        assert got == {
            "id": c.id,
            "serial": c.serial,
            "site": dev.site_id,
            "host": c.host,
            "port": c.port,
            "transport": dev.transport,
            "comm_key": c.comm_key,
        }


def test_config_file_is_private(fleet: FleetSpec, tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text("old")
    path.chmod(0o644)
    write_config(fleet, str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tomllib.loads(path.read_text())["devices"]
    assert [p.name for p in tmp_path.iterdir()] == ["fleet.toml"]


def test_config_escapes_strings() -> None:
    nasty = 'Quote " back\\slash\nnew\tline \x7f \x01 é 東京 # not a comment'
    site = SiteSpec("odd", nasty, "UTC", nasty, "office\n[[sites]]")
    dev = DeviceSpec(DeviceConfig(id='d"1', serial="S\\1"), "odd", "tcp")
    data = tomllib.loads(config_text(FleetSpec([site], [dev], {})))
    assert data["sites"] == [{"id": "odd", "name": nasty, "timezone": "UTC", "address": nasty}]
    assert data["devices"][0]["id"] == 'd"1'
    assert data["devices"][0]["serial"] == "S\\1"
