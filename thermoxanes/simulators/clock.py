"""Virtual time for the simulators: a clock that only moves when told to."""

from __future__ import annotations


class SimClock:
    """Virtual clock in seconds; never sleeps.

    Parameters
    ----------
    start_s : float
        Initial virtual time (s).
    """

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = float(start_s)

    def now(self) -> float:
        """Current virtual time (s)."""
        return self._now_s

    def advance(self, dt_s: float) -> float:
        """Move virtual time forward by ``dt_s`` (s, >= 0); return the new time (s)."""
        dt_s = float(dt_s)
        if dt_s < 0.0:
            raise ValueError(f"cannot advance a clock backwards (dt_s={dt_s})")
        self._now_s += dt_s
        return self._now_s

    def sleep(self, dt_s: float) -> None:
        """Drop-in for :func:`time.sleep`: advances virtual time instead of waiting."""
        self.advance(max(0.0, float(dt_s)))

    def __repr__(self) -> str:
        return f"SimClock(now_s={self._now_s:.3f})"
