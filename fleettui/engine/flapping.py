"""When is a device flapping? Nagios-style weighted state change, with hysteresis.

Each device's status is sampled at a fixed cadence (up or down) into a ring
of the last 21 samples. Each change between consecutive samples counts, the
oldest with weight 0.75 and the newest 1.25 (Nagios' curve), and the sum over
the 20 possible changes is the percent state change. Flapping starts when it
reaches ``high`` and stops only when it falls to ``low``: the band between
keeps the detector itself from flapping (Icinga's narrow 25/30 band produced
seven starts for one periodic problem in the research notes).

The naive rule of the article, more than N drops in a window, is the
alternative ``CountFlapDetector``.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum

HISTORY = 21
_CHANGES = HISTORY - 1
_WEIGHTS = [0.75 + i * (1.25 - 0.75) / (_CHANGES - 1) for i in range(_CHANGES)]


class FlapChange(StrEnum):
    """A change of flapping state."""

    STARTED = "started"
    STOPPED = "stopped"


class WeightedFlapDetector:
    """One device's flap detector (weighted percent state change)."""

    def __init__(self, low: float = 10.0, high: float = 25.0, history: str = "",
                 flapping: bool = False) -> None:
        if not 0 <= low <= high <= 100:
            raise ValueError("flap thresholds must satisfy 0 <= low <= high <= 100")
        self.low, self.high = low, high
        self.samples: deque[bool] = deque((c == "1" for c in history), maxlen=HISTORY)
        self.flapping = flapping

    @property
    def percent(self) -> float:
        """Weighted percent state change over the samples held (0..100)."""
        s = list(self.samples)
        offset = _CHANGES - (len(s) - 1)  # fewer samples: they are the newest ones
        total = sum(
            _WEIGHTS[offset + i - 1] for i in range(1, len(s)) if s[i] != s[i - 1]
        )
        return total * 100.0 / _CHANGES

    def sample(self, up: bool) -> FlapChange | None:
        """Add one sample; returns STARTED or STOPPED when flapping changes."""
        self.samples.append(up)
        pct = self.percent
        if not self.flapping and pct >= self.high:
            self.flapping = True
            return FlapChange.STARTED
        if self.flapping and pct <= self.low:
            self.flapping = False
            return FlapChange.STOPPED
        return None

    def history(self) -> str:
        """The samples as a string of 0/1, oldest first (for the store)."""
        return "".join("1" if up else "0" for up in self.samples)


class CountFlapDetector:
    """The article's rule: flapping when more than ``count`` drops fall in the window.

    The window is counted in samples (window_s / sample_s). Flapping stops
    when the window holds no drop at all, which is its (wide) hysteresis.
    """

    def __init__(self, count: int, window_samples: int, history: str = "",
                 flapping: bool = False) -> None:
        self.count = count
        self.samples: deque[bool] = deque((c == "1" for c in history),
                                          maxlen=max(2, window_samples))
        self.flapping = flapping

    @property
    def drops(self) -> int:
        """Up-to-down changes in the window."""
        s = list(self.samples)
        return sum(1 for i in range(1, len(s)) if s[i - 1] and not s[i])

    @property
    def percent(self) -> float:
        """Drops as a share of the allowed count, for display (100 = at the limit)."""
        return min(100.0, self.drops * 100.0 / (self.count + 1))

    def sample(self, up: bool) -> FlapChange | None:
        """Add one sample; returns STARTED or STOPPED when flapping changes."""
        self.samples.append(up)
        drops = self.drops
        if not self.flapping and drops > self.count:
            self.flapping = True
            return FlapChange.STARTED
        if self.flapping and drops == 0:
            self.flapping = False
            return FlapChange.STOPPED
        return None

    def history(self) -> str:
        """The samples as a string of 0/1, oldest first (for the store)."""
        return "".join("1" if up else "0" for up in self.samples)
