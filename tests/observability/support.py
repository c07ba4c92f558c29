"""Helpers: parse a Prometheus scrape, find the metric names a PromQL query reads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

OBSERVABILITY = Path(__file__).resolve().parents[2] / "docker" / "observability"

# Series that Prometheus makes itself rather than scraping from the app.
PROMETHEUS_SERIES = frozenset({"up"})

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPINGS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "inf", "nan"})


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    stripped = _STRINGS.sub('""', expr)
    stripped = _MATCHERS.sub(" ", stripped)
    stripped = _RANGES.sub(" ", stripped)
    stripped = _GROUPINGS.sub(" ", stripped)
    return {name for name in _IDENTIFIER.findall(stripped) if name.lower() not in _KEYWORDS}


def samples(scrape: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a text exposition, keyed by name and label set."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
    }


def value(scrape: str, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (yet)."""
    return samples(scrape).get((name, frozenset(labels.items())), 0.0)


def sample_names(scrape: str) -> set[str]:
    return {name for name, _ in samples(scrape)}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((OBSERVABILITY / "grafana" / "dashboards" / "items-api.json").read_text())
    return loaded


def dashboard_queries() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load((OBSERVABILITY / "rules" / "items-api.yml").read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def alert_queries() -> list[str]:
    return [rule["expr"] for rule in alert_rules()]
