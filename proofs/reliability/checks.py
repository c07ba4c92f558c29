"""The invariants checked after each scenario, and the figures reported for it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from proofs.reliability.load import Attempt, Load

RECOVERY_BUDGET_SECONDS = 2.0


@dataclass(frozen=True)
class Window:
    """The fault: from its injection to the moment the broken part answers again."""

    start: float
    end: float

    def overlaps(self, attempt: Attempt, grace: float = RECOVERY_BUDGET_SECONDS) -> bool:
        return attempt.t0 <= self.end + grace and attempt.t1 >= self.start


@dataclass
class Result:
    """The figures of one scenario, and the invariant violations found in them."""

    scenario: str
    seconds: float
    requests: int
    writes: int
    acknowledged: int
    lost: int
    duplicated: int
    mismatched: int
    unsettled: int
    replayed: int
    status_503: int
    other_5xx: int
    no_response: int
    outside_window: int
    bad_503: int
    recovery_s: float | None
    last_failure_s: float | None
    p50_ms: float
    p99_ms: float
    notes: dict[str, object] = field(default_factory=dict)

    def violations(self, *, responses_expected: bool) -> list[str]:
        problems = [
            f"{self.lost} acknowledged items missing from the database" if self.lost else "",
            f"{self.duplicated} duplicate rows" if self.duplicated else "",
            f"{self.mismatched} acknowledged ids differ from the stored row" if self.mismatched else "",
            f"{self.unsettled} writes never acknowledged" if self.unsettled else "",
            f"{self.other_5xx} 5xx other than 503" if self.other_5xx else "",
            f"{self.outside_window} failures outside the fault window" if self.outside_window else "",
            f"{self.bad_503} 503s without Retry-After or problem+json" if self.bad_503 else "",
            f"{self.no_response} requests without a response" if responses_expected and self.no_response else "",
            "no write was acknowledged" if not self.acknowledged else "",
        ]
        if self.recovery_s is not None and self.recovery_s > RECOVERY_BUDGET_SECONDS:
            problems.append(f"recovery took {self.recovery_s:.2f}s (budget {RECOVERY_BUDGET_SECONDS}s)")
        return [problem for problem in problems if problem]


def _percentile(values: list[float], fraction: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=1000, method="inclusive")[round(fraction * 1000) - 1]


def recovery_seconds(attempts: list[Attempt], window: Window) -> float:
    """From the fault's end to the first success of a request sent after it."""
    firsts = [a.t1 for a in attempts if not a.failed and a.status != 409 and a.t0 >= window.end]
    return max(0.0, min(firsts) - window.end) if firsts else float("inf")


def last_failure_seconds(attempts: list[Attempt], window: Window) -> float:
    """From the fault's end to the last failure's answer (0 when all came before the end)."""
    return max([0.0, *(a.t1 - window.end for a in attempts if a.failed)])


def evaluate(scenario: str, load: Load, rows: dict[str, list[int]], window: Window | None) -> Result:
    attempts = load.attempts
    acked = [w for w in load.writes if w.acked_id is not None]
    latencies = [
        (a.t1 - a.t0) * 1000 for a in attempts if a.status == 201 and (window is None or not window.overlaps(a))
    ]
    failures = [a for a in attempts if a.failed]
    return Result(
        scenario=scenario,
        seconds=load.stopped - load.started,
        requests=len(attempts),
        writes=len(load.writes),
        acknowledged=len(acked),
        lost=sum(1 for w in acked if w.marker not in rows),
        duplicated=sum(len(ids) - 1 for ids in rows.values()),
        mismatched=sum(1 for w in acked if w.marker in rows and rows[w.marker] != [w.acked_id]),
        unsettled=len(load.writes) - len(acked),
        replayed=sum(1 for a in attempts if a.replayed),
        status_503=sum(1 for a in attempts if a.status == 503),
        other_5xx=sum(1 for a in failures if a.status is not None and a.status != 503),
        no_response=sum(1 for a in failures if a.status is None),
        outside_window=sum(1 for a in failures if window is None or not window.overlaps(a)),
        bad_503=sum(
            1
            for a in attempts
            if a.status == 503 and not (a.retry_after and (a.content_type or "").startswith("application/problem+json"))
        ),
        recovery_s=None if window is None else recovery_seconds(attempts, window),
        last_failure_s=None if window is None else last_failure_seconds(attempts, window),
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
    )
