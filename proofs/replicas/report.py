"""The figures of the replica proof: one table, printed and handed to run.sh."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from load import Errors, Load, Outcome


def _errors(errors: Errors) -> str:
    if not errors.count:
        return "none"
    statuses = ", ".join(f"{'no response' if s == 0 else s} x{n}" for s, n in sorted(errors.by_status.items()))
    methods = ", ".join(f"{m} x{n}" for m, n in sorted(errors.by_method.items()))
    return f"{errors.count} ({statuses}; {methods})"


def _when(errors: Errors, origin: float, label: str) -> str:
    if errors.first_sent is None or errors.last_done is None:
        return ""
    return (
        f", {errors.first_sent - origin:+.2f} s to {errors.last_done - origin:+.2f} s after {label}: "
        f"window {errors.window_s:.2f} s"
    )


@dataclass
class Report:
    heading: str = "Replica proof"
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    replica_names: str = ""

    def phase(self, label: str, outcomes: list[Outcome], errors: Errors, served: dict[str, int]) -> None:
        span = max((o.done for o in outcomes), default=0) - min((o.sent for o in outcomes), default=0)
        window = f"{errors.window_s:.2f} s" if errors.count else "-"
        slowest = max((o.done - o.sent for o in outcomes), default=0.0)
        self.rows.append(
            (
                label,
                str(len(outcomes)),
                f"{len(outcomes) / span:.0f}" if span > 0 else "-",
                f"{slowest:.2f} s",
                str(errors.count),
                window,
                " / ".join(str(n) for n in served.values()),
            )
        )
        self.replica_names = " / ".join(served)

    def stop(self, name: str, sigterm: float, exited: float, errors: Errors, served_draining: int, load: Load) -> None:
        creates = [o for o in load.outcomes if o.method == "POST"]
        retried = len({o.key for o in creates if not o.ok})
        replayed = sum(o.replayed for o in creates)
        self.notes += [
            f"(b) {name}: SIGTERM to exit {exited - sigterm:.1f} s; it served {served_draining} requests "
            "after SIGTERM (draining)",
            f"(b) non-2xx: {_errors(errors)}{_when(errors, sigterm, 'SIGTERM')}",
            f"(b) creates: {len(creates)} attempts, {len(load.acked)} acknowledged, {retried} retried by the client "
            f"with their Idempotency-Key, {replayed} answered as replays, {len(load.gave_up)} given up",
        ]

    def server(self, term_s: float, shutdown_s: float) -> None:
        self.notes.append(
            f"(b) in its log: SIGTERM handled at {term_s:+.2f} s, server shut down at {shutdown_s:+.2f} s "
            "(the rest of the exit is Docker's)"
        )

    def rejoin(self, name: str, started: float, first: float, errors: Errors, served_after: dict[str, int]) -> None:
        total = sum(served_after.values()) or 1
        self.notes += [
            f"(c) {name} served its first request {first - started:.1f} s after `docker start` (log polled every "
            f"0.5 s); its share afterwards {100 * served_after[name] / total:.0f}%",
            f"(c) non-2xx: {_errors(errors)}{_when(errors, started, 'docker start')}",
        ]

    def writes(self, acked: int, rows: int, duplicated: int, missing: int) -> None:
        self.notes.append(
            f"writes: {acked} acknowledged (201), {rows} stored, {duplicated} stored twice, {missing} missing"
        )

    def lines(self) -> list[str]:
        header = (
            "phase",
            "requests",
            "req/s",
            "slowest",
            "non-2xx",
            "error window",
            f"2xx served by {self.replica_names}",
        )
        table = [header, *self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        out = [self.heading]
        for row in table:
            out.append(
                "  ".join(
                    cell.ljust(w) if i in (0, 6) else cell.rjust(w)
                    for i, (cell, w) in enumerate(zip(row, widths, strict=True))
                ).rstrip()
            )
        return out + self.notes

    def write(self) -> None:
        text = "\n".join(self.lines()) + "\n"
        print("\n" + text)
        path = os.environ.get("CT_REPLICAS_REPORT")
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(text)
