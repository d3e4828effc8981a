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


class _Samples:
    """A detector's ring of samples, and whether one more would change anything."""

    def __init__(self, history: str, size: int, flapping: bool) -> None:
        self.samples: deque[bool] = deque((c == "1" for c in history), maxlen=size)
        self.flapping = flapping
        #: how many of the newest samples are the same as the newest
        self._run = 0
        for up in reversed(self.samples):
            if up != self.samples[-1]:
                break
            self._run += 1

    def _add(self, up: bool) -> None:
        if self.samples and self.samples[-1] == up:
            self._run += 1
        else:
            self._run = 1
        self.samples.append(up)

    def steady(self, up: bool) -> bool:
        """Whether sampling ``up`` would leave the detector exactly as it is: the ring
        full of that one state, and not flapping (so no change to report). The alert
        engine skips such a device: a fleet at rest costs nothing to sample."""
        size = self.samples.maxlen or 0
        return (not self.flapping and len(self.samples) == size and self._run >= size
                and self.samples[-1] == up)

    def history(self) -> str:
        """The samples as a string of 0/1, oldest first (for the store)."""
        return "".join("1" if up else "0" for up in self.samples)


class WeightedFlapDetector(_Samples):
    """One device's flap detector (weighted percent state change)."""

    def __init__(self, low: float = 10.0, high: float = 25.0, history: str = "",
                 flapping: bool = False) -> None:
        if not 0 <= low <= high <= 100:
            raise ValueError("flap thresholds must satisfy 0 <= low <= high <= 100")
        super().__init__(history, HISTORY, flapping)
        self.low, self.high = low, high

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
        self._add(up)
        pct = self.percent
        if not self.flapping and pct >= self.high:
            self.flapping = True
            return FlapChange.STARTED
        if self.flapping and pct <= self.low:
            self.flapping = False
            return FlapChange.STOPPED
        return None


class CountFlapDetector(_Samples):
    """The article's rule: flapping when more than ``count`` drops fall in the window.

    The window is counted in samples (window_s / sample_s). Flapping stops
    when the window holds no drop at all, which is its (wide) hysteresis.
    """

    def __init__(self, count: int, window_samples: int, history: str = "",
                 flapping: bool = False) -> None:
        super().__init__(history, max(2, window_samples), flapping)
        self.count = count

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
        self._add(up)
        drops = self.drops
        if not self.flapping and drops > self.count:
            self.flapping = True
            return FlapChange.STARTED
        if self.flapping and drops == 0:
            self.flapping = False
            return FlapChange.STOPPED
        return None
