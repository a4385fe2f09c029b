"""Fault injection for the emulator: the failures the relay must survive, on demand.

Each :class:`FaultRule` matches requests (method, path substring) and fires either for the next
``times`` matching requests (deterministic, for unit-style tests) or with a ``probability`` drawn
from the emulator's seeded ``random.Random`` (reproducible chaos for benchmarks). The kinds:

- ``http_error``     answer ``status`` (500/502/503/504/524) with Discord's JSON body, nothing stored
- ``delay``          sleep ``seconds`` first, then process normally (a client that timed out
                     may still have posted: the realistic case)
- ``reset``          read the body, then close the socket with no answer; nothing stored
- ``drop_response``  store the message, then close the socket with no answer: the one
                     duplicate the relay is allowed to cause, and tests can tell it apart
- ``rate_limit``     a JSON 429 with ``retry_after`` (scope ``user``/``shared``/``global``)
- ``cloudflare``     Cloudflare's ban page: 429, ``text/html``, no ``Via``, no JSON

Control endpoints (``/_emulator/...``) are never faulted.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["FAULT_KINDS", "FaultKind", "FaultPlan", "FaultRule"]

FaultKind = Literal["http_error", "delay", "reset", "drop_response", "rate_limit", "cloudflare"]
FAULT_KINDS: tuple[str, ...] = ("http_error", "delay", "reset", "drop_response", "rate_limit", "cloudflare")


@dataclass
class FaultRule:
    """One injected failure; ``times`` counts down, ``probability`` (0..1) rolls per request.

    With neither set the rule fires once. ``path`` is a substring of the request path
    (e.g. ``"/webhooks/123/"``), ``method`` an HTTP method; both default to "any".
    """

    kind: FaultKind
    times: int | None = None
    probability: float | None = None
    path: str | None = None
    method: str | None = None
    status: int = 500
    seconds: float = 0.0
    retry_after: float = 1.0
    scope: str = "user"
    fired: int = field(default=0)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {FAULT_KINDS}")
        if self.times is None and self.probability is None:
            self.times = 1

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to the request at all (before any dice)."""
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or self.path in path

    def to_dict(self) -> dict[str, Any]:
        """JSON form for ``GET /_emulator/faults``."""
        return asdict(self)


class FaultPlan:
    """The ordered rules of one emulator; the first rule that fires wins."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._seed = seed
        self._rng = random.Random(seed)

    def add(self, rule: FaultRule) -> FaultRule:
        """Append a rule and return it (its ``fired`` counter shows how often it hit)."""
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Drop every rule and reseed, so a test run replays the same dice."""
        with self._lock:
            self._rules.clear()
            self._rng = random.Random(self._seed)

    def rules(self) -> list[FaultRule]:
        """A copy of the current rules."""
        with self._lock:
            return list(self._rules)

    def pick(self, method: str, path: str) -> FaultRule | None:
        """The fault for this request, if any; spends one ``times`` of a deterministic rule."""
        with self._lock:
            for rule in self._rules:
                if not rule.matches(method, path):
                    continue
                if rule.times is not None:
                    if rule.times <= 0:
                        continue
                    rule.times -= 1
                elif rule.probability is None or self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                return rule
            # Spent deterministic rules are noise in GET /_emulator/faults.
            self._rules = [r for r in self._rules if r.times is None or r.times > 0]
            return None
