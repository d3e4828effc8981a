"""fleettui.config: the TOML config, its defaults, and errors that name file, key and line."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from pydantic import ValidationError

from fleettui import config as cfg
from fleettui.config import (
    Config,
    ConfigError,
    DeviceConfig,
    PollSettings,
    Problem,
    SiteConfig,
    WebhookConfig,
    load_config,
    parse_config,
    resolve_config_path,
    resolve_db_path,
)
from fleettui.emulator.fleetgen import config_text, generate_fleet

SITE_A = """\
[[sites]]
id = "warehouse-a"
name = "Warehouse - Gate A"
timezone = "Africa/Casablanca"
"""

SITE_O = """\
[[sites]]
id = "office-a"
name = "Office A"
timezone = "Europe/Paris"
"""


def device(n: int, site: str = "warehouse-a", **extra: object) -> str:
    """A [[devices]] table with unique id, serial and host unless overridden."""
    values: dict[str, object] = {
        "id": f"dev_{n:02d}",
        "serial": f"DGD{n:04d}",
        "site": site,
        "host": f"127.0.0.{n + 10}",
    }
    values.update(extra)
    lines = ["[[devices]]"]
    for key, value in values.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def errors_of(text: str, path: Path | None = Path("fleet.toml")) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, path)
    return info.value


def only_problem(text: str) -> Problem:
    error = errors_of(text)
    assert len(error.problems) == 1, str(error)
    return error.problems[0]


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the ``occurrence``-th line starting with ``needle``."""
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(needle):
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not found")


# --------------------------------------------------------------------------- valid configs


def test_the_emulators_config_loads(tmp_path: Path) -> None:
    spec = generate_fleet(6, 40, seed=11)
    path = tmp_path / "fleet.toml"
    path.write_text(config_text(spec))
    config = load_config(path)
    assert [s.id for s in config.sites] == [s.id for s in spec.sites]
    assert [d.id for d in config.devices] == [d.config.id for d in spec.devices]
    for ours, theirs in zip(config.devices, spec.devices, strict=True):
        assert ours.serial == theirs.config.serial
        assert ours.host == theirs.config.host
        assert ours.port == theirs.config.port
        assert ours.transport == theirs.transport
        assert ours.comm_key == theirs.config.comm_key
        assert ours.site == theirs.site_id
    for site in spec.sites:
        assert [d.id for d in config.devices_at(site.id)] == [
            d.config.id for d in spec.devices_at(site.id)
        ]
        assert config.site(site.id).timezone == site.timezone
    assert config.source == path


def test_minimal_config_has_defaults() -> None:
    config = parse_config(SITE_A + device(1))
    assert config.poll == PollSettings()
    assert config.poll.check_interval_s == 4.0
    assert config.poll.timeout_s == 2.0
    assert config.poll.offline_after_failures == 2
    assert config.poll.backoff_max_s == 60.0
    assert config.poll.workers == 32
    assert config.poll.live_capture is False
    assert config.paths.db is None
    assert config.server.enabled is False
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8470
    assert config.webhooks == [] and config.schedules == []
    (dev,) = config.devices
    assert (dev.port, dev.transport, dev.comm_key, dev.name, dev.enabled) == (
        4370, "tcp", 0, "", True
    )
    assert dev.live_capture is None
    assert dev.display_name == "dev_01"
    site = config.site("warehouse-a")
    assert site.address == ""
    assert site.zone.key == "Africa/Casablanca"
    assert config.device("dev_01") is dev
    assert config.devices_at("warehouse-a") == [dev]
    assert config.devices_at("elsewhere") == []
    with pytest.raises(KeyError):
        config.device("nope")
    with pytest.raises(KeyError):
        config.site("nope")


def test_empty_fleets_are_valid() -> None:
    assert parse_config("").devices == []
    only_sites = parse_config(SITE_A)
    assert only_sites.devices == [] and len(only_sites.sites) == 1


def test_every_section_can_be_written() -> None:
    text = (
        """\
[poll]
check_interval_s = 10
timeout_s = 3.5
retry_after_s = 0
offline_after_failures = 3
jitter_s = 0.5
backoff_max_s = 120
clock_check_interval_s = 600
live_capture = true
workers = 8
sync_batch = 1000
bulk_timeout_s = 60

[server]
enabled = true
host = "::1"
port = 9000

[alerts]

[[webhooks]]
url = "https://example.org/hook"
events = ["device.offline", "punch"]
secret = "whsec_abc"

[[schedules]]
name = "nightly"
command = "sync_time"
cron = "0 2 * * *"
target = "warehouse-a"
"""
        + SITE_A
        + device(1, transport="udp", port=4371, name="Gate", live_capture=False, enabled=False)
        + device(2, host="gate-2.example.org")
    )
    config = parse_config(text)
    assert config.poll.check_interval_s == 10.0
    assert isinstance(config.poll.check_interval_s, float)
    assert config.poll.workers == 8
    assert config.server.host == "::1"
    assert config.webhooks[0].events == ["device.offline", "punch"]
    assert config.webhooks[0].secret.get_secret_value() == "whsec_abc"
    assert config.schedules[0].cron == "0 2 * * *"
    first, second = config.devices
    assert (first.transport, first.port, first.name, first.enabled) == ("udp", 4371, "Gate", False)
    assert config.effective_live_capture(first) is False
    assert config.effective_live_capture(second) is True
    assert config.effective_live_capture("dev_02") is True
    assert second.host == "gate-2.example.org"


def test_backoff_default_follows_a_long_check_interval() -> None:
    assert parse_config("[poll]\ncheck_interval_s = 120\n").poll.backoff_max_s == 120.0


def test_same_host_and_port_with_another_transport_is_allowed() -> None:
    text = SITE_A + device(1, host="10.0.0.1") + device(2, host="10.0.0.1", transport="udp")
    assert len(parse_config(text).devices) == 2


def test_models_are_frozen() -> None:
    config = parse_config(SITE_A + device(1))
    with pytest.raises(ValueError):
        config.poll.timeout_s = 5.0  # type: ignore[misc]


# --------------------------------------------------------------------------- field errors


def test_out_of_range_port_names_key_line_and_range() -> None:
    text = SITE_A + device(1) + device(2) + device(3, port=70000)
    error = errors_of(text)
    (problem,) = error.problems
    assert problem.key == "devices[2].port"
    assert problem.line == line_of(text, "port = 70000")
    assert problem.message == "expected an integer from 1 to 65535, got 70000"
    assert str(error) == (
        f"fleet.toml:{problem.line}: devices[2].port: "
        "expected an integer from 1 to 65535, got 70000"
    )


def test_missing_required_key_points_at_the_table_header() -> None:
    text = SITE_A + device(1) + '[[devices]]\nid = "dev_02"\nsite = "warehouse-a"\nhost = "h"\n'
    problem = only_problem(text)
    assert problem.key == "devices[1].serial"
    assert problem.line == line_of(text, "[[devices]]", occurrence=2)
    assert "missing" in problem.message


def test_missing_site_timezone() -> None:
    text = SITE_A + '[[sites]]\nid = "office-a"\nname = "Office"\n'
    problem = only_problem(text)
    assert (problem.key, problem.line) == ("sites[1].timezone", line_of(text, "[[sites]]", 2))
    assert "time zone" in problem.message


@pytest.mark.parametrize(
    ("extra", "key", "expected"),
    [
        ({"transport": "TCP"}, "transport", 'expected "tcp" or "udp" or "push", got \'TCP\''),
        ({"port": "4370"}, "port", "expected an integer from 1 to 65535, got '4370'"),
        ({"port": 4370.0}, "port", "expected an integer from 1 to 65535, got 4370"),
        ({"enabled": "yes"}, "enabled", "expected true or false, got 'yes'"),
        ({"live_capture": 1}, "live_capture", "expected true or false, got 1"),
        ({"serial": "DGD 1"}, "serial", "expected a serial number"),
        ({"id": "-dev"}, "id", "expected a device id"),
        ({"host": "bad host"}, "host", "expected an IPv4 or IPv6 address or a host name"),
        ({"host": "300.1.1.1"}, "host", "not a valid IPv4 address"),
        ({"host": "[::1]"}, "host", "without [ ]"),
        ({"name": "x" * 121}, "name", "at most 120 characters"),
    ],
)
def test_wrong_device_values(extra: dict[str, object], key: str, expected: str) -> None:
    text = SITE_A + device(1, **extra)
    problem = only_problem(text)
    assert problem.key == f"devices[0].{key}"
    assert expected in problem.message
    assert problem.line == line_of(text, f"{key} =", occurrence=2 if key in ("id", "name") else 1)
    assert "pydantic" not in problem.message and "type=" not in problem.message


@pytest.mark.parametrize(
    ("line", "key", "expected"),
    [
        ("timeout_s = 500", "poll.timeout_s", "expected a number of seconds from 0.1 to 120"),
        ("timeout_s = nan", "poll.timeout_s", "from 0.1 to 120"),
        ("backoff_max_s = inf", "poll.backoff_max_s", "expected a number of seconds"),
        ("workers = 0", "poll.workers", "expected an integer from 1 to 512, got 0"),
        ("workers = true", "poll.workers", "got true"),
        ("live_capture = \"no\"", "poll.live_capture", "expected true or false"),
        ("sync_batch = 10", "poll.sync_batch", "from 100 to 100000, got 10"),
        ("check_interval_s = 0.1", "poll.check_interval_s", "from 0.5 to 3600, got 0.1"),
    ],
)
def test_wrong_poll_values(line: str, key: str, expected: str) -> None:
    text = "# settings\n[poll]\njitter_s = 0\n" + line + "\n"
    problem = only_problem(text)
    assert problem.key == key
    assert expected in problem.message
    assert problem.line == 4


def test_backoff_shorter_than_check_interval() -> None:
    text = "[poll]\ncheck_interval_s = 30\nbackoff_max_s = 10\n"
    problem = only_problem(text)
    assert (problem.key, problem.line) == ("poll.backoff_max_s", 3)
    assert "check_interval_s" in problem.message


def test_wrong_types_for_tables() -> None:
    error = errors_of('poll = 5\nsites = "none"\n')
    assert [(p.key, p.line) for p in error.problems] == [("poll", 1), ("sites", 2)]
    assert error.problems[0].message == "expected a [poll] table, got 5"
    assert "[[sites]]" in error.problems[1].message


def test_dotted_and_inline_keys_are_located() -> None:
    problem = only_problem("poll.timeout_s = 500\n")
    assert (problem.key, problem.line) == ("poll.timeout_s", 1)
    problem = only_problem('\nserver = { enabled = true, port = 0 }\n')
    assert (problem.key, problem.line) == ("server.port", 2)


def test_multiline_values_do_not_confuse_line_numbers() -> None:
    text = (
        '[[webhooks]]\nurl = "http://x"\nevents = [\n  "a",\n  "[[devices]]",\n]\n'
        + SITE_A
        + '[[devices]]\nid = "d"\nserial = "S"\nsite = "warehouse-a"\nhost = "h"\n'
        + 'name = """\nport = 1\n[[devices]]\n"""\nport = 0\n'
    )
    problem = only_problem(text)
    assert problem.key == "devices[0].port"
    assert problem.line == len(text.splitlines())


def test_bad_timezones() -> None:
    for zone in ("Mars/Base", "", "../etc/passwd", "/etc/localtime"):
        text = SITE_A.replace("Africa/Casablanca", zone)
        problem = only_problem(text)
        assert problem.key == "sites[0].timezone", zone
        assert problem.line == 4
        assert "time zone" in problem.message
    problem = only_problem(SITE_A.replace("Africa/Casablanca", "Africa/Casablnca"))
    assert "did you mean 'Africa/Casablanca'" in problem.message


def test_bad_site_values() -> None:
    problem = only_problem(SITE_A.replace('"warehouse-a"', '"Warehouse A"'))
    assert (problem.key, problem.line) == ("sites[0].id", 2)
    assert "expected a site id" in problem.message
    problem = only_problem(SITE_A.replace('"Warehouse - Gate A"', '""'))
    assert (problem.key, problem.line) == ("sites[0].name", 3)
    assert "non-empty" in problem.message


# --------------------------------------------------------------------------- unknown keys


def test_unknown_top_level_key() -> None:
    problem = only_problem(SITE_A + device(1) + "\n[polling]\ntimeout_s = 1\n")
    assert problem.key == "polling"
    assert problem.line == len((SITE_A + device(1)).splitlines()) + 2
    assert "unknown key 'polling'" in problem.message
    assert "did you mean 'poll'" in problem.message


def test_unknown_key_at_the_very_top() -> None:
    problem = only_problem("version = 2\n" + SITE_A)
    assert (problem.key, problem.line) == ("version", 1)


def test_unknown_key_in_a_site() -> None:
    text = SITE_A + SITE_O + 'colour = "red"\n'
    problem = only_problem(text)
    assert (problem.key, problem.line) == ("sites[1].colour", line_of(text, "colour"))
    assert "[[sites]] takes: id, name, timezone, address" in problem.message


def test_unknown_key_in_a_device() -> None:
    text = SITE_A + device(1) + device(2, comm_kye=5)
    problem = only_problem(text)
    assert (problem.key, problem.line) == ("devices[1].comm_kye", line_of(text, "comm_kye"))
    assert "did you mean 'comm_key'" in problem.message


def test_unknown_key_in_poll() -> None:
    text = "[poll]\ntimeout_s = 3\nchek_interval_s = 4\n"
    problem = only_problem(text)
    assert (problem.key, problem.line) == ("poll.chek_interval_s", 3)
    assert "did you mean 'check_interval_s'" in problem.message


def refused_for(text: str) -> set[tuple[str, int | None]]:
    """Every (key, line) a config text is refused for."""
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return {(p.key, p.line) for p in info.value.problems}


def test_unknown_key_in_placeholders() -> None:
    problem = only_problem("[alerts]\nrepeat = 5\n")
    assert (problem.key, problem.line) == ("alerts.repeat", 2)
    assert "repeat_every_s" in problem.message  # the keys [alerts] does take
    problem = only_problem("[server]\nbind = 1\n")
    assert (problem.key, problem.line) == ("server.bind", 2)
    problems = refused_for('[[schedules]]\nname = "n"\ncommand = "c"\ncron = "*"\n')
    assert ("schedules[0].target", 1) in problems
    assert ("schedules[0].cron", 4) in problems


# --------------------------------------------------------------------------- cross-field errors


def test_duplicate_site_ids() -> None:
    text = SITE_A + SITE_O + SITE_A
    problem = only_problem(text)
    assert problem.key == "sites[2].id"
    assert problem.line == line_of(text, 'id = "warehouse-a"', occurrence=2)
    assert problem.message == "'warehouse-a' is also the id of sites[0]"


def test_duplicate_device_ids() -> None:
    text = SITE_A + device(1) + device(2, id="dev_01")
    problem = only_problem(text)
    assert problem.key == "devices[1].id"
    assert problem.line == line_of(text, 'id = "dev_01"', occurrence=2)
    assert problem.message == "'dev_01' is also the id of devices[0]"


def test_duplicate_serials() -> None:
    text = SITE_A + device(1, id="dev_a_01", serial="DGD1") + device(2) + device(3)
    text += device(4, serial="DGD1")
    problem = only_problem(text)
    assert problem.key == "devices[3].serial"
    assert problem.line == line_of(text, 'serial = "DGD1"', occurrence=2)
    assert problem.message == "'DGD1' is also the serial of devices[0] (dev_a_01)"


def test_duplicate_addresses() -> None:
    text = SITE_A + device(1, host="127.0.0.12") + device(2, host="127.0.0.12", port=4370)
    problem = only_problem(text)
    assert problem.key == "devices[1].host"
    assert problem.line == line_of(text, 'host = "127.0.0.12"', occurrence=2)
    assert "127.0.0.12:4370 (tcp)" in problem.message
    assert "devices[0] (dev_01)" in problem.message
    # the same IPv6 address written two ways, and host names ignoring case
    assert only_problem(SITE_A + device(1, host="::1") + device(2, host="0:0::1")).key == (
        "devices[1].host"
    )
    assert only_problem(SITE_A + device(1, host="Gate.lan") + device(2, host="gate.lan")).key == (
        "devices[1].host"
    )


def test_unknown_site() -> None:
    text = SITE_A + SITE_O + device(1) + device(2, site="office-a") + device(3, site="warehouse-z")
    error = errors_of(text)
    (problem,) = error.problems
    assert problem.key == "devices[2].site"
    assert problem.line == line_of(text, 'site = "warehouse-z"')
    assert problem.message.startswith("no site 'warehouse-z' (known: office-a, warehouse-a)")


def test_unknown_site_without_any_sites() -> None:
    problem = only_problem(device(1))
    assert problem.key == "devices[0].site"
    assert "no [[sites]]" in problem.message


def test_all_problems_are_reported_in_line_order() -> None:
    text = (
        "[poll]\ntimeout_s = 0\n"
        + SITE_A
        + device(1)
        + device(2, serial="DGD0001", port=0)
        + device(3, site="nowhere")
    )
    error = errors_of(text)
    keys = [p.key for p in error.problems]
    assert keys == ["poll.timeout_s", "devices[1].serial", "devices[1].port", "devices[2].site"]
    lines = [p.line for p in error.problems]
    assert lines == sorted(lines)
    assert len(str(error).splitlines()) == 4
    assert all(line.startswith("fleet.toml:") for line in str(error).splitlines())


def test_invalid_values_are_not_blamed_twice() -> None:
    # a malformed serial is reported once, not also compared with others
    text = SITE_A + device(1, serial="bad serial") + device(2, serial="bad serial")
    error = errors_of(text)
    assert [p.key for p in error.problems] == ["devices[0].serial", "devices[1].serial"]
    assert all("expected a serial number" in p.message for p in error.problems)


def test_programmatic_construction_checks_the_fleet_too() -> None:
    site = SiteConfig(id="a", name="A", timezone="UTC")
    dev = DeviceConfig(id="d", serial="S", site="b", host="h")
    with pytest.raises(ValueError, match="no site 'b'"):
        Config(sites=[site], devices=[dev])
    with pytest.raises(ValueError, match="check_interval_s"):
        PollSettings(check_interval_s=30, backoff_max_s=10)


# --------------------------------------------------------------------------- files and syntax


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text(SITE_A + "[[devices]]\nid = dev_01\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.line == 6
    assert "invalid TOML" in problem.message and "column 6" in problem.message
    assert str(info.value).startswith(f"{path}:6: invalid TOML")


def test_toml_error_at_end_of_file() -> None:
    problem = only_problem("[poll]\nworkers = [1,\n")
    assert problem.line == 2
    assert "invalid TOML" in problem.message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == path
    assert str(info.value) == f"{path}: no such file"


def test_directory_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "locked.toml"
    path.write_text(SITE_A)

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: cannot read the file: permission denied"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[[sites]]\nname = "Caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].line == 2
    assert "UTF-8" in str(info.value)


def test_error_without_a_path_still_has_lines() -> None:
    error = errors_of("[poll]\nworkers = 0\n", path=None)
    assert error.path is None
    assert str(error).startswith("line 2: poll.workers: ")


def test_config_error_pickles() -> None:
    error = errors_of("[poll]\nworkers = 0\n")
    copy = pickle.loads(pickle.dumps(error))
    assert copy.problems == error.problems and str(copy) == str(error)


# --------------------------------------------------------------------------- secrets


def test_out_of_range_comm_key_is_not_echoed() -> None:
    text = SITE_A + device(1, comm_key=1234567)
    error = errors_of(text)
    (problem,) = error.problems
    assert problem.key == "devices[0].comm_key"
    assert problem.line == line_of(text, "comm_key")
    assert problem.message == "expected a number from 0 to 999999"
    assert "1234567" not in str(error) and "1234567" not in repr(error.problems)


@pytest.mark.parametrize("value", ['"4815162"', "48151.62", "true", "[4815162]"])
def test_wrongly_typed_comm_key_is_not_echoed(value: str) -> None:
    error = errors_of(SITE_A + device(1) + f"comm_key = {value}\n")
    assert error.problems[0].key == "devices[0].comm_key"
    assert "4815162" not in str(error) and "48151.62" not in str(error)


def test_webhook_secret_is_never_shown() -> None:
    error = errors_of('[[webhooks]]\nurl = "http://x"\nsecret = 8675309\n')
    assert error.problems[0].key == "webhooks[0].secret"
    assert "8675309" not in str(error)
    config = parse_config('[[webhooks]]\nurl = "http://x"\nsecret = "hunter2-secret"\n')
    assert "hunter2-secret" not in repr(config) and "hunter2-secret" not in str(config)
    assert "hunter2-secret" not in repr(config.webhooks[0])
    hook = WebhookConfig(url="http://y", secret="s3cr3t-value")
    assert "s3cr3t-value" not in repr(hook)


def test_a_previous_webhook_secret_needs_an_aware_until_and_is_never_shown() -> None:
    hook = '[[webhooks]]\nurl = "http://x"\nsecret = "whsec_new"\n'
    alone = errors_of(hook + 'previous_secret = "whsec_0ld-one"\n')
    assert alone.problems[0].key == "webhooks[0]" and "go together" in str(alone)
    naive = errors_of(hook + 'previous_secret = "whsec_0ld-one"\n'
                      "previous_secret_until = 2026-12-01T18:00:00\n")
    assert naive.problems[0].key == "webhooks[0].previous_secret_until"
    assert "UTC offset" in str(naive)
    wrong = errors_of(hook + "previous_secret = 8675309\nprevious_secret_until = "
                      "2026-12-01T18:00:00Z\n")
    assert wrong.problems[0].key == "webhooks[0].previous_secret"
    assert "8675309" not in str(wrong)
    config = parse_config(hook + 'previous_secret = "whsec_0ld-one"\n'
                          "previous_secret_until = 2026-12-01T18:00:00+01:00\n")
    assert "whsec_0ld-one" not in repr(config)


def test_comm_key_not_in_repr() -> None:
    config = parse_config(SITE_A + device(1, comm_key=918273))
    assert config.devices[0].comm_key == 918273
    assert "918273" not in repr(config) and "918273" not in str(config)
    assert "918273" not in repr(config.devices[0])


def test_secrets_are_not_echoed_when_other_keys_are_wrong() -> None:
    text = SITE_A + device(1, comm_key=918273) + device(2, comm_key=918273, id="dev_01")
    text += device(3, site="nowhere", comm_key=918273)
    error = errors_of(text)
    assert "918273" not in str(error)


def test_programmatic_errors_do_not_echo_comm_key() -> None:
    with pytest.raises(ValueError) as info:
        DeviceConfig(id="d", serial="S", site="a", host="h", comm_key=7777777)
    assert "7777777" not in str(info.value)


# --------------------------------------------------------------------------- paths


def test_default_paths_use_platformdirs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cfg, "user_config_path", lambda app: tmp_path / "conf" / app)
    monkeypatch.setattr(cfg, "user_data_path", lambda app: tmp_path / "data" / app)
    assert cfg.default_config_path() == tmp_path / "conf" / "fleettui" / "fleettui.toml"
    assert cfg.default_db_path() == tmp_path / "data" / "fleettui" / "fleettui.db"


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FLEETTUI_CONFIG", raising=False)
    assert resolve_config_path(None) == cfg.default_config_path()
    assert cfg.default_config_path().name == "fleettui.toml"
    monkeypatch.setenv("FLEETTUI_CONFIG", str(tmp_path / "env.toml"))
    assert resolve_config_path(None) == tmp_path / "env.toml"
    assert resolve_config_path(str(tmp_path / "cli.toml")) == tmp_path / "cli.toml"
    monkeypatch.setenv("FLEETTUI_CONFIG", "")
    assert resolve_config_path(None) == cfg.default_config_path()


def test_db_path_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FLEETTUI_DB", raising=False)
    config = parse_config(f'[paths]\ndb = "{tmp_path / "conf.db"}"\n')
    bare = parse_config("")
    assert resolve_db_path(None, None) == cfg.default_db_path()
    assert cfg.default_db_path().name == "fleettui.db"
    assert resolve_db_path(None, bare) == cfg.default_db_path()
    assert resolve_db_path(None, config) == tmp_path / "conf.db"
    monkeypatch.setenv("FLEETTUI_DB", str(tmp_path / "env.db"))
    assert resolve_db_path(None, config) == tmp_path / "env.db"
    assert resolve_db_path(str(tmp_path / "cli.db"), config) == tmp_path / "cli.db"


def test_relative_db_path_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEETTUI_DB", raising=False)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    conf_dir = tmp_path / "etc" / "fleettui"
    conf_dir.mkdir(parents=True)
    path = conf_dir / "fleet.toml"
    path.write_text('[paths]\ndb = "data/fleet.db"\n')
    config = load_config(path)
    assert config.paths.db == conf_dir / "data" / "fleet.db"
    assert resolve_db_path(None, config) == conf_dir / "data" / "fleet.db"


def test_home_in_db_path_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("FLEETTUI_DB", raising=False)
    config = parse_config('[paths]\ndb = "~/fleet.db"\n', Path("/etc/fleet.toml"))
    assert resolve_db_path(None, config) == tmp_path / "fleet.db"


def test_empty_db_path_is_an_error() -> None:
    problem = only_problem('[paths]\ndb = ""\n')
    assert (problem.key, problem.line) == ("paths.db", 2)
    assert "file path" in problem.message


def test_config_module_does_not_import_the_emulator() -> None:
    source = Path(cfg.__file__).read_text()
    assert "fleettui.emulator" not in source and "from .emulator" not in source


def test_a_silence_for_an_unknown_target_is_an_error() -> None:
    text = SITE_A + '[[alerts.silences]]\ntarget = "nowhere"\nuntil = 2026-12-01T18:00:00Z\n'
    problem = only_problem(text)
    assert problem.key == "alerts.silences[0].target"
    assert "no site or device called 'nowhere'" in problem.message


def test_a_webhook_to_an_internal_target_is_an_error_naming_file_key_and_line() -> None:
    hooks = ('[[webhooks]]\nurl = "http://10.0.0.1/hook?token=SECRET"\n\n'
             '[[webhooks]]\nurl = "http://[::ffff:169.254.169.254]/"\n\n'
             '[[webhooks]]\nurl = "http://0x7f000001:8080/"\n\n'
             '[[webhooks]]\nurl = "https://payroll.example.com/hook"\n')
    error = errors_of(hooks)
    assert [(p.key, p.line) for p in error.problems] == [
        ("webhooks[0].url", 2), ("webhooks[1].url", 5), ("webhooks[2].url", 8)]
    lines = str(error).splitlines()
    assert lines[0] == ("fleet.toml:2: webhooks[0].url: refused target: 10.0.0.1 is a private "
                        "address; set allow_private_webhook_targets = true in the config's "
                        "[security] table to allow private, loopback and other non-public "
                        "targets")
    assert "always refused" in lines[1] and "127.0.0.1" in lines[2]
    assert "SECRET" not in str(error)
    # allowed: private and loopback pass; link-local and metadata never do
    allowed = errors_of("[security]\nallow_private_webhook_targets = true\n\n" + hooks)
    assert [(p.key, p.line) for p in allowed.problems] == [("webhooks[1].url", 8)]
    config = parse_config('[security]\nallow_private_webhook_targets = true\n\n'
                          '[[webhooks]]\nurl = "http://127.0.0.1:9/hook"\n')
    assert config.security.allow_private_webhook_targets
    assert not parse_config("").security.allow_private_webhook_targets


def test_the_security_table_is_checked_like_the_others() -> None:
    wrong = errors_of('[security]\nallow_private_webhook_targets = "yes"\n\n'
                      '[[webhooks]]\nurl = "http://10.0.0.1/"\n\n'
                      '[[webhooks]]\nurl = "http://metadata.google.internal/"\n')
    # an unusable setting blames no private target, only what is always refused
    assert [(p.key, p.line) for p in wrong.problems] == [
        ("security.allow_private_webhook_targets", 2), ("webhooks[1].url", 8)]
    assert "expected true or false" in str(wrong)
    typo = only_problem("[security]\nallow_private_targets = true\n")
    assert typo.key == "security.allow_private_targets" and typo.line == 2
    assert "did you mean 'allow_private_webhook_targets'" in typo.message
    with pytest.raises(ValidationError):  # built in code, the rule holds too
        Config(webhooks=[WebhookConfig(url="http://169.254.169.254/")])


# --- push devices and the push listener ----------------------------------------


def _push_device(n: int, **extra: object) -> str:
    lines = [f'[[devices]]\nid = "push_{n:02d}"\nserial = "PSH{n:04d}"\nsite = "warehouse-a"',
             'transport = "push"'] + [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def test_push_devices_need_no_address_and_two_of_them_do_not_clash() -> None:
    text = SITE_A + "[push]\nenabled = true\nlisten = \"0.0.0.0:8081\"\n" + \
        _push_device(1) + _push_device(2) + device(3)
    config = parse_config(text)
    assert [(d.id, d.push, d.host) for d in config.devices] == [
        ("push_01", True, None), ("push_02", True, None), ("dev_03", False, "127.0.0.13")]
    assert (config.push.host, config.push.port, config.push.offline_after) == (
        "0.0.0.0", 8081, 30.0)


def test_a_polled_device_without_a_host_and_a_push_device_with_one_are_refused() -> None:
    text = SITE_A + '[[devices]]\nid = "d"\nserial = "S"\nsite = "warehouse-a"\n'
    problem = only_problem(text)
    assert problem.key == "devices[0]" and "'host' is missing" in problem.message
    assert 'transport = "push"' in problem.message
    problem = only_problem(SITE_A + _push_device(1, host="10.0.0.1"))
    assert "push device dials in" in problem.message


@pytest.mark.parametrize(("push", "key", "expected"), [
    ('listen = "8081"', "push.listen", "expected host:port"),
    ('listen = "10.0.0.1:99999"', "push.listen", "expected host:port"),
    ("delay_s = 1", "push.delay_s", "expected an integer from 2 to 60"),
    ('allow_networks = ["10.0.0.0/33"]', "push.allow_networks", "expected a network"),
])
def test_push_settings_are_checked(push: str, key: str, expected: str) -> None:
    problem = only_problem(SITE_A + f"[push]\n{push}\n")
    assert problem.key.startswith(key) and expected in problem.message
