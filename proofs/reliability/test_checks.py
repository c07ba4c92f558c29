"""The invariant checks themselves: each violation they exist for is caught."""

from __future__ import annotations

import pytest

from proofs.reliability.checks import Window, evaluate, last_failure_seconds, recovery_seconds
from proofs.reliability.load import Attempt, Load, Write

WINDOW = Window(start=10.0, end=12.0)


def _load(attempts: list[Attempt], writes: list[Write]) -> Load:
    load = Load(port=0, token="", prefix="t")
    load.attempts, load.writes = attempts, writes
    load.started, load.stopped = 0.0, 20.0
    return load


def _ok(t: float, key: str = "k", item_id: int = 1) -> Attempt:
    return Attempt("write", key, t, t + 0.01, 201, item_id=item_id)


def _unavailable(t: float) -> Attempt:
    return Attempt(
        "write", "k", t, t + 0.01, 503, retry_after="2", content_type="application/problem+json; charset=utf-8"
    )


def test_a_clean_run_has_no_violation() -> None:
    result = evaluate("s", _load([_ok(1.0)], [Write("m", "k", 1)]), {"m": [1]}, None)

    assert result.violations(responses_expected=True) == []


def test_an_acknowledged_item_missing_from_the_database_is_lost() -> None:
    result = evaluate("s", _load([_ok(1.0)], [Write("m", "k", 1)]), {}, None)

    assert result.lost == 1
    assert result.violations(responses_expected=True) == ["1 acknowledged items missing from the database"]


def test_two_rows_for_one_write_are_a_duplicate_even_unacknowledged() -> None:
    result = evaluate("s", _load([_ok(1.0)], [Write("m", "k", 1), Write("n", "j")]), {"m": [1], "n": [2, 3]}, None)

    assert result.duplicated == 1
    assert result.unsettled == 1


def test_an_acknowledged_id_other_than_the_stored_one_is_a_mismatch() -> None:
    result = evaluate("s", _load([_ok(1.0)], [Write("m", "k", 1)]), {"m": [7]}, None)

    assert result.mismatched == 1


def test_a_500_is_a_violation_even_inside_the_fault_window() -> None:
    attempts = [Attempt("write", "k", 11.0, 11.1, 500), _ok(12.5)]

    result = evaluate("s", _load(attempts, [Write("m", "k", 1)]), {"m": [1]}, WINDOW)

    assert result.other_5xx == 1
    assert result.outside_window == 0


def test_a_503_outside_the_fault_window_is_a_violation() -> None:
    attempts = [_unavailable(5.0), _unavailable(11.0), _ok(12.2)]

    result = evaluate("s", _load(attempts, [Write("m", "k", 1)]), {"m": [1]}, WINDOW)

    assert result.status_503 == 2
    assert result.outside_window == 1


def test_a_503_without_retry_after_is_a_violation() -> None:
    attempts = [Attempt("write", "k", 11.0, 11.1, 503, content_type="application/problem+json"), _ok(12.2)]

    result = evaluate("s", _load(attempts, [Write("m", "k", 1)]), {"m": [1]}, WINDOW)

    assert result.bad_503 == 1


def test_recovery_runs_from_the_fault_end_to_the_first_success_sent_after_it() -> None:
    attempts = [_ok(11.9), _unavailable(12.0), _ok(12.2), _unavailable(12.5), _ok(13.0)]

    assert recovery_seconds(attempts, WINDOW) == pytest.approx(12.21 - WINDOW.end)
    assert last_failure_seconds(attempts, WINDOW) == pytest.approx(12.51 - WINDOW.end)


def test_a_failure_sent_more_than_the_budget_after_the_fault_is_outside_the_window() -> None:
    attempts = [_ok(12.1), _unavailable(14.5)]

    result = evaluate("s", _load(attempts, [Write("m", "k", 1)]), {"m": [1]}, WINDOW)

    assert result.outside_window == 1


def test_no_success_after_the_fault_is_an_endless_recovery() -> None:
    result = evaluate("s", _load([_unavailable(11.0)], [Write("m", "k")]), {}, WINDOW)

    assert result.recovery_s == float("inf")
    assert "recovery took infs (budget 2.0s)" in result.violations(responses_expected=True)
