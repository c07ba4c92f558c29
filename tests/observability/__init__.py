"""Tests of logs, metrics, and the monitoring configuration in docker/observability."""
