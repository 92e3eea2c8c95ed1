"""The circuit breaker's state machine, with the rules of sony/gobreaker as KrakenD configures it.

- **closed**: calls go through. An error adds one to the consecutive errors, a success resets them; when they
  exceed `max_errors` (KrakenD's rule: `max_errors + 1` errors in a row trip it) the breaker opens. With an
  `interval`, the count starts again at each interval (fixed windows from the last change, as gobreaker's
  generations, not a sliding window); without one (0) it lasts until a success.
- **open**: every call is refused at once, for `timeout` seconds; then the breaker is half-open.
- **half-open**: one call goes through (the trial); others are refused while it runs. Its success closes the
  breaker, its error opens it again. A trial whose outcome says nothing about the backend (the client's own mistake)
  decides nothing: the next call is the trial.

A call's outcome counts only in the period (gobreaker's "generation") it started in: a reply from before the last
change is ignored. One event loop per worker, so no locks: `admit` and `settle` run without awaiting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
_NEVER = math.inf


@dataclass(frozen=True, slots=True)
class Rules:
    max_errors: int  # consecutive errors tolerated; one more opens the breaker
    interval: float  # seconds a closed breaker counts errors before starting again; 0: until a success
    timeout: float  # seconds an open breaker refuses calls before the trial


class BreakerOpen(Exception):
    """The breaker refused the call; `retry_in` is how long until it lets a trial through (seconds, >= 0)."""

    def __init__(self, breaker: Breaker, retry_in: float) -> None:
        super().__init__(f"circuit breaker {breaker.name!r} is {breaker.state}")
        self.breaker = breaker
        self.retry_in = retry_in


# Called on every change: (breaker, from state, to state).
OnChange = Callable[["Breaker", str, str], None]


class Breaker:
    __slots__ = ("name", "state", "failures", "generation", "expiry", "trial", "_rules", "_on_change")

    def __init__(self, name: str, rules: Rules, on_change: OnChange, now: float) -> None:
        self.name = name
        self._rules = rules
        self._on_change = on_change
        self.state = CLOSED
        self.generation = -1
        self._renew(now)

    def admit(self, now: float) -> int:
        """Let a call through: the period it belongs to, for `settle`. Raises BreakerOpen when refused."""
        state = self.state
        if state is CLOSED:
            if now >= self.expiry:
                self._renew(now)
            return self.generation
        if state is OPEN:
            if now < self.expiry:
                raise BreakerOpen(self, self.expiry - now)
            self._change(HALF_OPEN, now)
        if self.trial:  # half-open, and the trial call is still running
            raise BreakerOpen(self, 0.0)
        self.trial = True
        return self.generation

    def settle(self, generation: int, error: bool | None, now: float) -> None:
        """The outcome of a call admitted in `generation`: an error (True), a success (False), or neither (None)."""
        if self.state is CLOSED and now >= self.expiry:
            self._renew(now)
        if generation != self.generation:
            return
        if self.state is HALF_OPEN:
            self.trial = False
            if error is not None:
                self._change(OPEN if error else CLOSED, now)
        elif error:
            self.failures += 1
            if self.failures > self._rules.max_errors:
                self._change(OPEN, now)
        elif error is False:
            self.failures = 0

    def _change(self, state: str, now: float) -> None:
        before, self.state = self.state, state
        self._renew(now)
        self._on_change(self, before, state)

    def _renew(self, now: float) -> None:
        """A new period: nothing counted yet, and when it ends."""
        self.generation += 1
        self.failures = 0
        self.trial = False
        if self.state is CLOSED:
            self.expiry = now + self._rules.interval if self._rules.interval > 0 else _NEVER
        elif self.state is OPEN:
            self.expiry = now + self._rules.timeout
        else:
            self.expiry = _NEVER


class BreakerSet:
    """Breakers by key (a Lambda function's name), at most `cap` of them: the least recently used goes first.

    A key gets a breaker only on its first counted error (`create`): calls that succeed, or fail by the client's
    own mistake (an invalid or unknown function name), never take a place, so a flood of made-up names cannot
    push out the breakers of functions that are really failing."""

    __slots__ = ("_make", "_cap", "_breakers")

    def __init__(self, make: Callable[[str], Breaker], cap: int) -> None:
        self._make = make
        self._cap = cap
        self._breakers: dict[str, Breaker] = {}  # in order of use, the most recent last

    def __len__(self) -> int:
        return len(self._breakers)

    def get(self, key: str) -> Breaker | None:
        breakers = self._breakers
        breaker = breakers.pop(key, None)
        if breaker is not None:
            breakers[key] = breaker
        return breaker

    def create(self, key: str) -> Breaker:
        breakers = self._breakers
        while len(breakers) >= self._cap:
            del breakers[next(iter(breakers))]
        breaker = breakers[key] = self._make(key)
        return breaker
