"""Turn the runs into medians, a JSON file, a chart and the table in docs/performance.md."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .load import ENDPOINTS

BEGIN, END = "<!-- bench:begin (written by `make bench`; edits inside are overwritten) -->", "<!-- bench:end -->"
# Issue 13's targets (0.50x stays the long-term aim for the ratio).
TARGET_RATIO = 0.30
TARGET_RATIO_ENDPOINTS = ("list_first", "get_item", "create_item")
TARGET_CPU_US = {"list_first": 600, "get_item": 600, "create_item": 1100, "health": 120}  # server + PostgreSQL
TARGET_TAIL = 3.0  # p99 / p50
TARGET_PSS_MB = 45.0
LABELS = {endpoint.key: endpoint.label for endpoint in ENDPOINTS}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per endpoint: medians of each side over the rounds, and the API / ceiling ratio per round."""
    summary: dict[str, Any] = {}
    for key in dict.fromkeys(run["endpoint"] for run in runs):
        entry: dict[str, Any] = {"label": LABELS[key]}
        for role in ("api", "ceiling"):
            mine = [run for run in runs if run["endpoint"] == key and run["role"] == role]
            entry[role] = {
                "rps": statistics.median(run["rps"] for run in mine),
                "p50_ms": statistics.median(run["p50_ms"] for run in mine),
                "p99_ms": statistics.median(run["p99_ms"] for run in mine),
                "errors": sum(run["errors"]["total"] for run in mine),
                # Server processes + their PostgreSQL backends: steadier than req/s on a busy machine.
                "cpu_us": statistics.median(run.get("cpu_us_per_request") or 0 for run in mine),
            }
        by_round = {(run["round"], run["role"]): run["rps"] for run in runs if run["endpoint"] == key}
        rounds = sorted({round_ for round_, _ in by_round})
        ratios = [round(by_round[(r, "api")] / by_round[(r, "ceiling")], 3) for r in rounds]
        entry["ratios"] = ratios
        entry["ratio"] = round(statistics.median(ratios), 3)
        summary[key] = entry
    return summary


def check_targets(summary: dict[str, Any], api_memory: list[dict[str, Any]]) -> list[dict[str, Any]]:
    checks = []
    for key in TARGET_RATIO_ENDPOINTS:
        if key in summary:
            ratio = summary[key]["ratio"]
            checks.append(
                {
                    "target": f"{LABELS[key]}: API >= {TARGET_RATIO:.2f}x ceiling",
                    "value": f"{ratio:.2f}x",
                    "met": ratio >= TARGET_RATIO,
                }
            )
    for key, budget in TARGET_CPU_US.items():
        if key in summary:
            cpu = summary[key]["api"]["cpu_us"]
            checks.append(
                {
                    "target": f"{LABELS[key]}: API CPU <= {budget:,} µs per request",
                    "value": f"{cpu:,.0f} µs",
                    "met": cpu <= budget,
                }
            )
    for key, entry in summary.items():
        tail = entry["api"]["p99_ms"] / entry["api"]["p50_ms"] if entry["api"]["p50_ms"] else float("inf")
        checks.append(
            {
                "target": f"{LABELS[key]}: API p99 <= {TARGET_TAIL:g}x p50",
                "value": f"{tail:.1f}x",
                "met": tail <= TARGET_TAIL,
            }
        )
    errors = sum(entry["api"]["errors"] for entry in summary.values())
    checks.append({"target": "API errors (all endpoints)", "value": str(errors), "met": errors == 0})
    biggest = max((worker["pss_mb"] for worker in api_memory), default=0.0)
    checks.append(
        {
            "target": f"API PSS per worker <= {TARGET_PSS_MB:g} MB",
            "value": f"{biggest:.1f} MB",
            "met": biggest <= TARGET_PSS_MB,
        }
    )
    return checks


def write_json(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=2) + "\n")


def _bars(axes: Any, summary: dict[str, Any], keys: list[str], result: dict[str, Any]) -> None:
    width, positions = 0.38, range(len(keys))
    sides = (("api", "API", "#3b6fb6", -width / 2), ("ceiling", "ceiling", "#b0b0b0", width / 2))
    for role, name, color, offset in sides:
        values = [summary[key][role]["rps"] for key in keys]
        label = f"{name} ({result['settings'][role]['describe']})"
        axes.bar([p + offset for p in positions], values, width, label=label, color=color)
    for position, key in zip(positions, keys, strict=True):
        axes.annotate(
            f"{summary[key]['ratio']:.2f}x",
            (position - width / 2, summary[key]["api"]["rps"]),
            ha="center",
            va="bottom",
            fontsize=9,
            xytext=(0, 2),
            textcoords="offset points",
        )
    axes.set_xticks(list(positions), [summary[key]["label"].replace("&", "\n&") for key in keys], fontsize=8)
    axes.grid(axis="y", alpha=0.3)


def write_chart(result: dict[str, Any], path: Path) -> None:
    """Bars of req/s, API beside ceiling; /health (no database) on its own scale at the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    groups = [keys for keys in ([k for k in summary if k != "health"], [k for k in summary if k == "health"]) if keys]
    figure, panels = plt.subplots(
        1, len(groups), figsize=(11, 5.2), dpi=110, squeeze=False, width_ratios=[len(keys) for keys in groups]
    )
    for axes, keys in zip(panels[0], groups, strict=True):
        _bars(axes, summary, keys, result)
    panels[0][0].set_ylabel("requests per second (median of rounds)")
    panels[0][0].legend(fontsize=8, loc="upper left")
    load = result["settings"]["load"]
    figure.suptitle(
        f"Items API vs raw-Python ceiling, API / ceiling above the bars ({load['connections']} connections, "
        f"{load['rounds']} x {load['duration']:g} s)\n{result['machine']['summary']}",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _priority(load: dict[str, Any]) -> str:
    scheduling = load.get("scheduling", "normal")  # runs before it was recorded ran at normal priority
    return " at a real-time priority (SCHED_FIFO)" if scheduling == "fifo" else " at normal priority"


def markdown(result: dict[str, Any], chart_link: str) -> str:
    settings, machine = result["settings"], result["machine"]
    load = settings["load"]
    lines = [
        BEGIN,
        f"Run `{result['id']}` ({result['mode']}): {load['rounds']} interleaved rounds of {load['duration']:g} s per "
        f"endpoint and side after a {load['warmup']:g} s warm-up, wrk {load['threads']} threads x "
        f"{load['connections']} connections on loopback{_priority(load)}, {result['dataset']['items']:,} seeded items.",
        "",
        "| Endpoint | API req/s | Ceiling req/s | API / ceiling (median; per round) | API p50 / p99 ms "
        "| Ceiling p50 / p99 ms | CPU µs/req API / ceiling | Errors API / ceiling |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for entry in result["summary"].values():
        api, ceiling = entry["api"], entry["ceiling"]
        per_round = ", ".join(f"{ratio:.2f}" for ratio in entry["ratios"])
        lines.append(
            f"| `{entry['label']}` | {api['rps']:,.0f} | {ceiling['rps']:,.0f} | **{entry['ratio']:.2f}x** "
            f"({per_round}) | {_ms(api['p50_ms'])} / {_ms(api['p99_ms'])} "
            f"| {_ms(ceiling['p50_ms'])} / {_ms(ceiling['p99_ms'])} | {api['cpu_us']:,.0f} / {ceiling['cpu_us']:,.0f} "
            f"| {api['errors']} / {ceiling['errors']} |"
        )
    memory = result["memory"]
    lines += [
        "",
        "CPU µs/req: user + system CPU of the server's processes and of the PostgreSQL backends serving it, "
        "per request; it moves less than req/s when other work shares the machine. Errors: responses with "
        "status >= 400 plus socket errors (connect, read, write, timeout).",
        "",
        f"![API vs ceiling, requests per second]({chart_link})",
        "",
        "Memory after the run, per worker, RSS / PSS / USS (PSS splits the pages shared after the fork "
        "between the workers; USS, the private pages, is what one more worker costs): "
        + "; ".join(
            f"{role}: "
            + ", ".join(f"{w['rss_mb']:.0f} / {w['pss_mb']:.0f} / {w['uss_mb']:.0f} MB" for w in memory[role])
            for role in ("api", "ceiling")
        )
        + ".",
        "",
        "Targets (issue 13):",
        "",
    ]
    lines += [f"- {'met' if c['met'] else '**not met**'}: {c['target']} — {c['value']}" for c in result["targets"]]
    versions = result["versions"]
    lines += [
        "",
        f"- Hardware: {machine['summary']}; {machine['kernel']}; PostgreSQL {versions['postgresql']} on the same "
        "machine; the load generator, the servers and the database share the cores.",
        f"- API: {settings['api']['describe']}; environment "
        + ", ".join(f"`{k}={v}`" for k, v in settings["api"]["env"].items())
        + f"; write token: {'yes' if result['dataset']['token'] else 'no (the app has no tokens command yet)'}.",
        f"- Ceiling: {settings['ceiling']['describe']}; "
        + ", ".join(f"`{k}={v}`" for k, v in settings["ceiling"]["env"].items())
        + ".",
        "- Versions: " + ", ".join(f"{name} {version}" for name, version in versions.items()) + ".",
        END,
    ]
    return "\n".join(lines) + "\n"


def update_document(source: Path, target: Path, block: str) -> None:
    """Write ``source`` to ``target`` with its generated block replaced, keeping the prose around it."""
    text = source.read_text() if source.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block
    target.write_text(text)
