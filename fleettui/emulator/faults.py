"""Faults an emulated device can be told to show, switchable at run time.

Each fault mimics what a real terminal or its network does when it is sick, as
the client sees it: a device that is off the network answers nothing (the
client times out), a refused connection comes back at once, a 3G link adds
latency and loses datagrams, a confused firmware answers garbage.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


class FaultError(ValueError):
    """A fault description that cannot be applied (unknown key, wrong type or range)."""


@dataclass(slots=True)
class Flap:
    """Up for ``up_s`` seconds, then unreachable for ``down_s``, over and over."""

    up_s: float
    down_s: float
    #: monotonic time the current schedule started (set when the fault is applied)
    started: float = 0.0

    def is_up(self, now: float) -> bool:
        """Whether the link is up at monotonic time ``now``."""
        period = self.up_s + self.down_s
        if period <= 0:
            return True
        return (now - self.started) % period < self.up_s


@dataclass(slots=True)
class Faults:
    """The faults in force on one device. All off by default."""

    #: no answer at all (client times out): datagrams are lost; on an open TCP
    #: connection bytes wait, as TCP retransmits them, until the link is back
    offline: bool = False
    #: up/down on a schedule, unreachable while down
    flap: Flap | None = None
    #: delay added to every reply and event the device sends (a slow link)
    latency_ms: float = 0.0
    #: processing delay added before answering each command (a busy device);
    #: set it above the client's timeout to produce stale replies
    reply_delay_ms: float = 0.0
    #: bulk transfer speed limit in KiB/s (real terminals manage 40-100); 0 = none
    throughput_kbps: float = 0.0
    #: probability 0..1 that a UDP datagram, in either direction, is lost
    udp_loss: float = 0.0
    #: answer every command with random bytes instead of a ZK reply
    garbage: bool = False
    #: send only the first half of every reply frame
    truncate: bool = False
    #: TCP connections are refused and UDP ports closed (service down, host up)
    refuse: bool = False
    #: the record buffer counts as full: new punches are rejected
    buffer_full: bool = False
    # --- push terminals (ignored by pull-mode devices) ---
    #: answers to the next n uploads are lost after the server took them
    #: (the device posts the same batch again)
    lost_answers: float = 0.0
    #: after a reboot the terminal sends its whole log again (upload cursor to 0)
    resend_all_after_reboot: bool = False
    #: command verb (or prefix, "DATA DELETE") -> return code forced for it
    command_returns: dict[str, int] | None = None

    def describe(self) -> dict[str, Any]:
        """The active faults as JSON-ready data (only those that are on)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "flap":
                if value is not None:
                    out["flap"] = {"up_s": value.up_s, "down_s": value.down_s}
            elif value:
                out[f.name] = value
        return out


_BOOLS = ("offline", "garbage", "truncate", "refuse", "buffer_full", "resend_all_after_reboot")
_NUMBERS = {
    "latency_ms": (0.0, 600_000.0),
    "reply_delay_ms": (0.0, 600_000.0),
    "throughput_kbps": (0.0, 10_000_000.0),
    "udp_loss": (0.0, 1.0),
    "lost_answers": (0.0, 1000.0),
    # the device clock holds 2000-2099: ten years either way is plenty of wrong
    "clock_offset_s": (-315_360_000.0, 315_360_000.0),
    # a clock that gains or loses up to an hour a day
    "clock_drift_s_per_day": (-3600.0, 3600.0),
}
#: longest flap phase, in seconds (a day)
MAX_FLAP_S = 86_400.0


def parse_fault_update(body: Any) -> dict[str, Any]:
    """Validate a fault update (the body of ``PUT /devices/{id}/faults``).

    Returns a normalised dict; raises FaultError naming the key and what was
    expected. ``flap`` may be null to stop flapping.
    """
    if not isinstance(body, dict):
        raise FaultError("faults must be a JSON object, e.g. {\"offline\": true}")
    if not body:
        raise FaultError("no fault given; known faults: " + ", ".join(known_fault_keys()))
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in _BOOLS:
            if not isinstance(value, bool):
                raise FaultError(f"{key}: expected true or false, got {value!r}")
            out[key] = value
        elif key in _NUMBERS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise FaultError(f"{key}: expected a number, got {value!r}")
            lo, hi = _NUMBERS[key]
            if not lo <= value <= hi:  # NaN fails this too
                raise FaultError(f"{key}: expected a number from {lo:g} to {hi:g}, got {value}")
            out[key] = float(value)
        elif key == "command_returns":
            out[key] = _command_returns(value)
        elif key == "flap":
            if value is None:
                out[key] = None
                continue
            if not isinstance(value, dict) or set(value) - {"up_s", "down_s"}:
                raise FaultError('flap: expected {"up_s": seconds, "down_s": seconds} or null')
            try:
                up, down = value["up_s"], value["down_s"]
            except KeyError as e:
                raise FaultError(f"flap: missing {e.args[0]}") from None
            for name, v in (("up_s", up), ("down_s", down)):
                if (
                    isinstance(v, bool)
                    or not isinstance(v, int | float)
                    or not 0 < v <= MAX_FLAP_S  # NaN fails this too
                ):
                    raise FaultError(
                        f"flap.{name}: expected seconds above 0, at most {MAX_FLAP_S:g}; got {v!r}"
                    )
            out[key] = {"up_s": float(up), "down_s": float(down)}
        else:
            raise FaultError(
                f"unknown fault {key!r}; known faults: " + ", ".join(known_fault_keys())
            )
    return out


def _command_returns(value: Any) -> dict[str, int] | None:
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise FaultError('command_returns: expected {"DATA": -1005, ...} or null')
    out: dict[str, int] = {}
    for verb, code in value.items():
        if not verb or len(verb) > 40 or not all(ch.isalnum() or ch in " _" for ch in verb):
            raise FaultError(f"command_returns: {verb!r} is not a command verb")
        if isinstance(code, bool) or not isinstance(code, int) or not -99_999 <= code <= 99_999:
            raise FaultError(f"command_returns.{verb}: expected an integer return code, "
                             f"got {code!r}")
        out[verb.strip().upper()] = code
    return out


def known_fault_keys() -> list[str]:
    """Every key a fault update may carry."""
    return [*_BOOLS, "flap", "command_returns", *_NUMBERS]
