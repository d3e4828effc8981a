"""Webhook endpoints, deliveries and dead-letter replay through the HTTP API, over real HTTP.

The server and a real receiver run on loopback in the test's event loop; the
dispatcher is the engine's, over the same store, with an injected clock so the
24-hour dead-letter limit passes without waiting. Signatures are checked with
the independent ``standardwebhooks`` package.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from fleettui.config import WebhookConfig
from fleettui.domain import Punch, TzFlag
from fleettui.engine.webhooks import WebhookDispatcher, config_endpoint_id, config_endpoints
from tests import test_http_api, test_webhooks
from tests.test_engine import Clock
from tests.test_http_api import NOW, Api, _err, serving
from tests.test_webhooks import Receiver

api = test_http_api.api  # the fixtures: a server over a filled store, a webhook receiver
receiver = test_webhooks.receiver

CONFIG_URL = "https://hooks.example/x"  # the api fixture delivered two events to it
CONFIG_SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()
GIVEN_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


async def _with_config_endpoint(api: Api) -> str:
    cfg = WebhookConfig(url=CONFIG_URL, secret=CONFIG_SECRET)  # type: ignore[arg-type]
    await api.store.sync_webhook_endpoints(config_endpoints([cfg]), NOW)
    return config_endpoint_id(CONFIG_URL)


async def _punch(api: Api, device: str, user: str, minutes: int) -> None:
    utc = NOW + timedelta(minutes=minutes)
    await api.store.insert_punches(device, [Punch(
        device, user, utc.replace(tzinfo=None), "UTC", utc, TzFlag.OK, 0, 1, "sync", NOW)])


async def test_create_list_delete_and_the_secret_is_shown_once(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config_id = await _with_config_endpoint(api)
    made = await api.post("/v1/webhooks", role="admin",
                          json={"url": "https://payroll.example/hook", "events": ["punch.*"]})
    assert made.status_code == 201, made.text
    created = made.json()
    generated = created["secret"]
    assert generated.startswith("whsec_") and len(base64.b64decode(generated[6:])) == 32
    assert (created["origin"], created["events"], created["enabled"]) == ("api", ["punch.*"],
                                                                           True)
    assert created["id"].startswith("wh_")
    given = await api.post("/v1/webhooks", role="admin", json={
        "url": "http://127.0.0.1:9/slack", "secret": GIVEN_SECRET, "enabled": False,
        "hex_signature_header": "X-Signature", "timeout_s": 2.5, "events": ["alert.opened"]})
    assert given.status_code == 201 and given.json()["secret"] == GIVEN_SECRET
    listed = await api.get("/v1/webhooks", role="admin")
    assert listed.status_code == 200
    hooks = {h["id"]: h for h in listed.json()["webhooks"]}
    assert set(hooks) == {config_id, created["id"], given.json()["id"]}
    assert hooks[config_id]["origin"] == "config" and hooks[config_id]["url"] == CONFIG_URL
    assert hooks[config_id]["deliveries"]["delivered"] == 2
    assert hooks[config_id]["deliveries"]["avg_latency_ms"] == 50.0
    assert hooks[given.json()["id"]]["hex_signature_header"] == "X-Signature"
    assert all("secret" not in h for h in hooks.values())
    for secret in (generated, GIVEN_SECRET, CONFIG_SECRET):
        assert secret not in listed.text
    # a config endpoint is changed in the config file
    msg = _err(await api.client.delete(f"/v1/webhooks/{config_id}", headers=api.auth("admin")),
               409, "config_endpoint")
    assert "config file" in msg
    gone = await api.client.delete(f"/v1/webhooks/{created['id']}", headers=api.auth("admin"))
    assert gone.status_code == 204
    ids = [h["id"] for h in (await api.get("/v1/webhooks", role="admin")).json()["webhooks"]]
    assert created["id"] not in ids and config_id in ids
    _err(await api.client.delete(f"/v1/webhooks/{created['id']}", headers=api.auth("admin")),
         404, "not_found")
    for secret in (generated, GIVEN_SECRET, CONFIG_SECRET):
        assert secret not in caplog.text


async def test_webhook_errors(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await _with_config_endpoint(api)
    ok = {"url": "https://a.example/h"}
    _err(await api.client.get("/v1/webhooks"), 401, "unauthorized")
    _err(await api.client.post("/v1/webhooks", json=ok), 401, "unauthorized")
    for role in ("viewer", "operator"):
        assert "admin" in _err(await api.get("/v1/webhooks", role=role), 403, "forbidden")
        _err(await api.post("/v1/webhooks", role=role, json=ok), 403, "forbidden")
        _err(await api.client.delete("/v1/webhooks/wh_x", headers=api.auth(role)), 403,
             "forbidden")
        _err(await api.post("/v1/webhooks/wh_x/replay", role=role), 403, "forbidden")

    async def bad(body: object, code: str = "invalid_field", raw: bytes | None = None) -> str:
        r = (await api.post("/v1/webhooks", role="admin", content=raw) if raw is not None
             else await api.post("/v1/webhooks", role="admin", json=body))
        return _err(r, 400, code)

    await bad(None, "bad_json", raw=b"{nope")
    await bad(None, "bad_json", raw=b"")
    await bad(["https://a.example"], "bad_json")
    assert "colour" in await bad({**ok, "colour": "red"}, "unknown_field")
    assert "url" in await bad({"events": ["*"]}, "missing_field")
    assert "url" in await bad({"url": 5})
    assert "events" in await bad({**ok, "events": "punch.created"})
    assert "enabled" in await bad({**ok, "enabled": "yes"})
    assert "timeout_s" in await bad({**ok, "timeout_s": "3"})
    assert "timeout_s" in await bad({**ok, "timeout_s": 0})
    assert "url" in await bad({"url": "ftp://a.example/h"})
    assert "url" in await bad({"url": "not a url"})
    assert "credentials" in await bad({"url": "https://me:pw@a.example/h"})
    assert "punch.made" in await bad({**ok, "events": ["punch.made"]})
    assert "events" in await bad({**ok, "events": []})
    assert "events" in await bad({**ok, "events": [3]})
    assert "zzz" in await bad({**ok, "events": ["zzz.*"]})
    assert "hex_signature_header" in await bad({**ok, "hex_signature_header": "webhook-id"})
    assert "hex_signature_header" in await bad({**ok, "hex_signature_header": "X Sig"})
    for secret in ("not-whsec-" + GIVEN_SECRET, "whsec_***not base64***", "whsec_c2hvcnQ="):
        assert secret not in await bad({**ok, "secret": secret})
    big = json.dumps({**ok, "events": ["*"] * 40000}).encode()
    _err(await api.post("/v1/webhooks", role="admin", content=big), 413, "too_large")
    dup = await api.post("/v1/webhooks", role="admin", json={"url": CONFIG_URL})
    assert "config file" in _err(dup, 409, "duplicate")
    assert (await api.post("/v1/webhooks", role="admin", json=ok)).status_code == 201
    _err(await api.post("/v1/webhooks", role="admin", json=ok), 409, "duplicate")
    _err(await api.client.delete("/v1/webhooks/wh_nope", headers=api.auth("admin")), 404,
         "not_found")
    _err(await api.get("/v1/webhooks/wh_nope/deliveries"), 404, "not_found")
    _err(await api.post("/v1/webhooks/wh_nope/replay", role="admin"), 404, "not_found")
    assert GIVEN_SECRET not in caplog.text


async def test_an_api_endpoint_is_served_without_a_restart_and_dropped_when_deleted(
    api: Api, receiver: Receiver
) -> None:
    # what the engine runs, with no config ones
    dispatcher = WebhookDispatcher(api.store, [], allow_private_targets=True)
    assert await dispatcher.run_once() == 0
    made = (await api.post("/v1/webhooks", role="admin", json={
        "url": receiver.url, "events": ["punch.created"], "secret": GIVEN_SECRET})).json()
    # only what is committed after the endpoint exists: not the fixture's earlier punches
    await _punch(api, "ln1", "7001", 1)
    await _punch(api, "ln1", "7002", 2)
    await dispatcher.run_once()
    verifier = Webhook(GIVEN_SECRET)
    for headers, body in receiver.got:
        verifier.verify(body, headers)
    assert [e["punch"]["user_id"] for e in receiver.events()] == ["7001", "7002"]  # type: ignore[index]
    stats = (await api.get("/v1/webhooks", role="admin")).json()["webhooks"]
    assert [h["deliveries"]["delivered"] for h in stats if h["id"] == made["id"]] == [2]
    delivered = (await api.get(f"/v1/webhooks/{made['id']}/deliveries",
                               params={"state": "delivered"})).json()["deliveries"]
    assert [(d["event_type"], d["device_id"], d["attempts"]) for d in delivered] == [
        ("punch.created", "ln1", 1)] * 2
    assert delivered[0]["webhook_id"] == receiver.got[-1][0]["webhook-id"]
    r = await api.client.delete(f"/v1/webhooks/{made['id']}", headers=api.auth("admin"))
    assert r.status_code == 204
    await _punch(api, "ln1", "7003", 3)
    assert await dispatcher.run_once() == 0
    assert len(receiver.got) == 2
    await dispatcher.close()


async def test_dead_deliveries_are_listed_and_replayed(api: Api, receiver: Receiver) -> None:
    made = (await api.post("/v1/webhooks", role="admin",
                           json={"url": receiver.url, "events": ["punch.*"]})).json()
    clock = Clock(datetime.now(UTC))
    dispatcher = WebhookDispatcher(api.store, [], clock=clock, seed=1, allow_private_targets=True)
    receiver.always_fail = True
    for n in range(3):
        await _punch(api, "tk3", f"80{n}", 10 + n)
    await dispatcher.run_once()
    pending = (await api.get(f"/v1/webhooks/{made['id']}/deliveries",
                             params={"state": "pending"})).json()["deliveries"]
    assert len(pending) == 3 and pending[-1]["last_error"] == "HTTP 503"
    assert pending[-1]["next_attempt_at"] is not None
    clock.now += timedelta(hours=25)  # past the 24-hour limit: the head of the queue dies
    for _ in range(3):
        await dispatcher.run_once()
    r = await api.get(f"/v1/webhooks/{made['id']}/deliveries", params={"state": "dead"})
    dead = r.json()["deliveries"]
    assert [d["state"] for d in dead] == ["dead"] * 3
    # the oldest failed twice (before and after the limit); the ones behind it once, after
    assert [d["attempts"] for d in dead] == [1, 1, 2]
    assert {d["last_error"] for d in dead} == {"HTTP 503"}
    assert [d["outbox_id"] for d in dead] == sorted((d["outbox_id"] for d in dead), reverse=True)
    everywhere = await api.store.webhook_dead()
    assert {(d.endpoint_id, d.url) for d in everywhere} == {(made["id"], receiver.url)}
    # replay one, then the rest
    receiver.always_fail = False
    oldest = dead[-1]["outbox_id"]
    r = await api.post(f"/v1/webhooks/{made['id']}/replay", role="admin",
                       json={"outbox_ids": [oldest]})
    assert r.status_code == 200 and r.json() == {"replayed": 1}
    await dispatcher.run_once()
    assert [e["punch"]["user_id"] for e in receiver.events()] == ["800"]  # type: ignore[index]
    r = await api.post(f"/v1/webhooks/{made['id']}/replay", role="admin")
    assert r.json() == {"replayed": 2}
    await dispatcher.run_once()
    assert [e["punch"]["user_id"] for e in receiver.events()] == [  # type: ignore[index]
        "800", "801", "802"]
    assert await api.store.webhook_dead() == []
    again = await api.post(f"/v1/webhooks/{made['id']}/replay", role="admin", json={})
    assert again.json() == {"replayed": 0}
    url = f"/v1/webhooks/{made['id']}/deliveries"
    for params, name in (({"state": "lost"}, "state"), ({"limit": "0"}, "limit"),
                         ({"limit": "x"}, "limit"), ({"colour": "1"}, "colour")):
        assert name in _err(await api.get(url, params=params), 400, "invalid_parameter")
    replay = f"/v1/webhooks/{made['id']}/replay"
    for body in ({"outbox_ids": []}, {"outbox_ids": ["1"]}, {"outbox_ids": [True]},
                 {"outbox_ids": [-1]}, {"outbox_ids": 3}):
        assert "outbox_ids" in _err(await api.post(replay, role="admin", json=body), 400,
                                    "invalid_field")
    _err(await api.post(replay, role="admin", json={"all": True}), 400, "unknown_field")
    _err(await api.post(replay, role="admin", content=b"[1"), 400, "bad_json")
    await dispatcher.close()


async def test_patch_pauses_and_changes_an_endpoint(api: Api, receiver: Receiver) -> None:
    config_id = await _with_config_endpoint(api)
    made = (await api.post("/v1/webhooks", role="admin", json={
        "url": receiver.url, "events": ["device.*"], "secret": GIVEN_SECRET})).json()
    url = f"/v1/webhooks/{made['id']}"
    dispatcher = WebhookDispatcher(api.store, [], allow_private_targets=True)

    async def patch(body: object, role: str = "admin", wid: str = made["id"]) -> httpx.Response:
        return await api.client.patch(f"/v1/webhooks/{wid}", json=body, headers=api.auth(role))

    r = await patch({"enabled": False, "events": ["punch.created"], "timeout_s": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["enabled"], body["events"], body["timeout_s"]) == (False, ["punch.created"], 3)
    assert GIVEN_SECRET not in r.text
    await _punch(api, "ln1", "9001", 1)
    await dispatcher.run_once()
    assert receiver.got == []  # paused
    r = await patch({"enabled": True, "hex_signature_header": "X-Sig"})
    assert r.json()["hex_signature_header"] == "X-Sig"
    await dispatcher.run_once()  # what was committed while paused arrives now
    assert [e["punch"]["user_id"] for e in receiver.events()] == ["9001"]  # type: ignore[index]
    assert "x-sig" in receiver.got[0][0]
    r = await patch({"hex_signature_header": None})
    assert r.json()["hex_signature_header"] is None
    # errors
    _err(await api.client.patch(url, json={"enabled": False}), 401, "unauthorized")
    _err(await patch({"enabled": False}, role="operator"), 403, "forbidden")
    assert "rotate" in _err(await patch({"rotate": True}), 400, "unknown_field")
    _err(await patch({"enabled": "no"}), 400, "invalid_field")
    _err(await patch({"events": ["nothing"]}), 400, "invalid_field")
    _err(await patch({"url": "gopher://x"}), 400, "invalid_field")
    _err(await patch({"url": CONFIG_URL}), 409, "duplicate")
    assert (await patch({"url": receiver.url})).status_code == 200
    r = await api.client.patch(url, content=b"{", headers=api.auth("admin"))
    _err(r, 400, "bad_json")
    assert "config file" in _err(await patch({"enabled": False}, wid=config_id),
                                 409, "config_endpoint")
    _err(await patch({"enabled": False}, wid="wh_nope"), 404, "not_found")
    await dispatcher.close()


# --- secret rotation ------------------------------------------------------------------------


@pytest.fixture
async def clocked(db_target: str) -> AsyncIterator[tuple[Api, Clock]]:
    """The API with a clock the test moves (starting at the real time, so that receivers
    verifying with the standardwebhooks library accept the timestamps), over each backend
    in turn: a rotation is the store's to keep."""
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    async with serving(db_target, clock) as running:  # type: ignore[arg-type]
        yield running, clock


def _verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Whether a receiver holding ``secret`` accepts this delivery (standardwebhooks)."""
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


async def test_a_rotated_secret_signs_next_to_the_old_one_until_the_overlap_ends(
    clocked: tuple[Api, Clock], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api, clock = clocked
    made = (await api.post("/v1/webhooks", role="admin", json={
        "url": receiver.url, "events": ["punch.*"], "secret": GIVEN_SECRET,
        "hex_signature_header": "X-Sig"})).json()
    dispatcher = WebhookDispatcher(api.store, [], clock=clock, allow_private_targets=True)
    r = await api.client.patch(f"/v1/webhooks/{made['id']}", headers=api.auth("admin"),
                               json={"rotate_secret": True, "previous_secret_valid_s": 60})
    assert r.status_code == 200, r.text
    new = r.json()["secret"]
    assert new.startswith("whsec_") and len(base64.b64decode(new[6:])) == 32
    assert new != GIVEN_SECRET and GIVEN_SECRET not in r.text
    overlap_ends = clock.now + timedelta(seconds=60)
    assert r.json()["previous_secret_until"] == overlap_ends.isoformat().replace("+00:00", "Z")
    listed = (await api.get("/v1/webhooks", role="admin")).text
    assert new not in listed and GIVEN_SECRET not in listed
    assert f'"previous_secret_until": "{overlap_ends:%Y-%m-%dT%H:%M:%S}Z"' in listed

    # during the overlap: two signatures; a receiver on either secret accepts
    await _punch(api, "ln1", "7101", 1)
    await dispatcher.run_once()
    headers, body = receiver.got[-1]
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert _verifies(GIVEN_SECRET, headers, body) and _verifies(new, headers, body)
    key = base64.b64decode(new.removeprefix("whsec_"))  # the hex header: the new secret only
    assert headers["x-sig"] == hmac.new(key, body, hashlib.sha256).hexdigest()

    # after it: only the new secret signs, and the store forgets the old one
    clock.now = overlap_ends
    await _punch(api, "ln1", "7102", 2)
    await dispatcher.run_once()
    headers, body = receiver.got[-1]
    assert json.loads(body)["punch"]["user_id"] == "7102"
    assert len(headers["webhook-signature"].split(" ")) == 1
    assert _verifies(new, headers, body) and not _verifies(GIVEN_SECRET, headers, body)
    [row] = await api.store.webhook_endpoints(with_secrets=True, origin="api")
    assert (row.secret, row.previous_secret, row.previous_secret_until) == (new, "",
                                                                                      None)
    listed = (await api.get("/v1/webhooks", role="admin")).json()["webhooks"]
    assert [h["previous_secret_until"] for h in listed if h["id"] == made["id"]] == [None]

    # a given secret, the default overlap of 24 hours; then one with no overlap at all
    third = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    r = await api.client.patch(f"/v1/webhooks/{made['id']}", headers=api.auth("admin"),
                               json={"secret": third})
    assert r.status_code == 200 and r.json()["secret"] == third
    assert r.json()["previous_secret_until"] == (
        (clock.now + timedelta(hours=24)).isoformat().replace("+00:00", "Z"))
    await _punch(api, "ln1", "7103", 3)
    await dispatcher.run_once()
    headers, body = receiver.got[-1]
    assert _verifies(third, headers, body) and _verifies(new, headers, body)
    assert not _verifies(GIVEN_SECRET, headers, body)
    r = await api.client.patch(f"/v1/webhooks/{made['id']}", headers=api.auth("admin"),
                               json={"rotate_secret": True, "previous_secret_valid_s": 0})
    fourth = r.json()["secret"]
    assert r.json()["previous_secret_until"] is None
    await _punch(api, "ln1", "7104", 4)
    await dispatcher.run_once()
    headers, body = receiver.got[-1]
    assert _verifies(fourth, headers, body) and not _verifies(third, headers, body)
    assert [json.loads(b)["punch"]["user_id"] for _, b in receiver.got] == [
        "7101", "7102", "7103", "7104"]
    await dispatcher.close()

    # no secret in any answer but the one that made it, in the log, or in the events
    everything = (await api.get("/v1/webhooks", role="admin")).text + (await api.get(
        f"/v1/webhooks/{made['id']}/deliveries")).text
    stored_events = " ".join(e.message for e in await api.store.events_after(0))
    assert "secret rotated" in stored_events
    for secret in (GIVEN_SECRET, new, third, fourth):
        for text in (everything, caplog.text, stored_events):
            assert secret not in text and secret.removeprefix("whsec_") not in text


async def test_rotation_errors_change_nothing(
    clocked: tuple[Api, Clock], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api, clock = clocked
    config_id = await _with_config_endpoint(api)
    made = (await api.post("/v1/webhooks", role="admin", json={
        "url": receiver.url, "events": ["punch.*"], "secret": GIVEN_SECRET})).json()

    async def patch(body: object, wid: str = made["id"], role: str = "admin") -> httpx.Response:
        return await api.client.patch(f"/v1/webhooks/{wid}", json=body, headers=api.auth(role))

    # a config endpoint's secret lives in the config file
    msg = _err(await patch({"rotate_secret": True}, wid=config_id), 409, "config_endpoint")
    assert "config file" in msg and "secret" in msg
    _err(await patch({"rotate_secret": True}, role="operator"), 403, "forbidden")
    bad_secrets = ("not-whsec-" + GIVEN_SECRET, "whsec_***not base64***", "whsec_c2hvcnQ=",
                   "", GIVEN_SECRET[6:])
    for secret in bad_secrets:
        msg = _err(await patch({"secret": secret}), 400, "invalid_field")
        assert msg.startswith("secret:") and (not secret or secret not in msg)
    for body, field in (
        ({"rotate_secret": "yes"}, "rotate_secret"),
        ({"rotate_secret": True, "secret": GIVEN_SECRET}, "secret"),
        ({"previous_secret_valid_s": 60}, "previous_secret_valid_s"),
        ({"rotate_secret": False, "previous_secret_valid_s": 60}, "previous_secret_valid_s"),
        ({"rotate_secret": True, "previous_secret_valid_s": -1}, "previous_secret_valid_s"),
        ({"rotate_secret": True, "previous_secret_valid_s": 7 * 86400 + 1},
         "previous_secret_valid_s"),
        ({"rotate_secret": True, "previous_secret_valid_s": "60"}, "previous_secret_valid_s"),
        ({"rotate_secret": True, "enabled": "no"}, "enabled"),
        ({"rotate_secret": True, "url": "gopher://x"}, "url"),
    ):
        assert _err(await patch(body), 400, "invalid_field").startswith(f"{field}:"), body
    # nothing changed: deliveries carry one signature, by the original secret
    dispatcher = WebhookDispatcher(api.store, [], clock=clock, allow_private_targets=True)
    await _punch(api, "ln1", "7201", 1)
    await dispatcher.run_once()
    await dispatcher.close()
    [(headers, body)] = receiver.got
    assert len(headers["webhook-signature"].split(" ")) == 1
    assert _verifies(GIVEN_SECRET, headers, body)
    [row] = await api.store.webhook_endpoints(with_secrets=True, origin="api")
    assert (row.secret, row.previous_secret) == (GIVEN_SECRET, "")
    # rotate_secret: false alone is no rotation (and shows no secret)
    r = await patch({"rotate_secret": False})
    assert r.status_code == 200 and "secret" not in r.json()
    assert GIVEN_SECRET not in caplog.text


async def test_a_config_endpoint_rotates_with_previous_secret_until(
    clocked: tuple[Api, Clock], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """The config file's way: the new secret, and the old one as previous_secret until a
    time; both sign until then, the new one alone after (the dispatcher's clock)."""
    caplog.set_level(logging.DEBUG)
    api, clock = clocked
    old = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    until = clock.now + timedelta(seconds=60)  # receivers check the timestamp: stay near now
    endpoint = WebhookConfig.model_validate({
        "url": receiver.url, "events": ["punch.*"], "secret": GIVEN_SECRET,
        "previous_secret": old, "previous_secret_until": until})
    assert old not in repr(endpoint)
    dispatcher = WebhookDispatcher(api.store, [endpoint], clock=clock, allow_private_targets=True)
    await _punch(api, "ln1", "7201", 1)
    await dispatcher.run_once()
    headers, body = receiver.got[-1]
    assert _verifies(old, headers, body) and _verifies(GIVEN_SECRET, headers, body)
    clock.now = until
    await _punch(api, "ln1", "7202", 2)
    await dispatcher.run_once()
    headers, body = receiver.got[-1]
    assert json.loads(body)["punch"]["user_id"] == "7202"
    assert _verifies(GIVEN_SECRET, headers, body) and not _verifies(old, headers, body)
    await dispatcher.close()
    assert old not in caplog.text and GIVEN_SECRET not in caplog.text
