"""Property-based fuzzing of the running production server from its own ``/openapi.json``.

All of schemathesis's checks, every phase (examples, coverage, fuzzing, stateful), at least
MIN_CASES generated cases, zero failures. The seed is printed; rerun one with
``SCHEMATHESIS_SEED=<seed> make reliability-test``.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from proofs.reliability.conftest import HERE, Stack
from tests.support.server import ROOT

MIN_CASES = 1000
MAX_EXAMPLES_PER_OPERATION = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "300"))
_GENERATED = re.compile(r"(\d+) generated")


def _schemathesis() -> str:
    beside_python = Path(sys.executable).with_name("schemathesis")
    found = str(beside_python) if beside_python.exists() else shutil.which("schemathesis")
    if found is None:
        pytest.fail("schemathesis is not installed: run it through make reliability-test (proofs/requirements.txt)")
    return found


@pytest.mark.timeout(240)
def test_schemathesis_finds_no_failure_in_the_openapi_contract(
    stack_factory: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stack_factory("fuzz")
    stack.server.start()
    seed = int(os.environ.get("SCHEMATHESIS_SEED") or random.randrange(2**31))
    print(f"schemathesis seed: {seed}")
    command = [
        _schemathesis(),
        f"--config-file={HERE / 'schemathesis.toml'}",
        "run",
        f"http://127.0.0.1:{stack.server.port}/openapi.json",
        "--checks=all",
        f"--max-examples={MAX_EXAMPLES_PER_OPERATION}",
        f"--seed={seed}",
        "--continue-on-failure",
        # One worker: on Python 3.11.7 hypothesis's ast.parse fails in concurrent threads.
        "--workers=1",
        "--request-timeout=10",
        "--report=junit",
        f"--report-dir={tmp_path / 'report'}",
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SCHEMATHESIS_HOOKS": "proofs.reliability.schemathesis_hooks",
        "ITEMS_API_TOKEN": stack.token,
        "NO_COLOR": "1",
    }
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=220, check=False)
    output = result.stdout + result.stderr
    (tmp_path / "schemathesis.log").write_text(output)
    summary = output[output.find("=== SUMMARY") :] if "=== SUMMARY" in output else output[-3000:]
    print(summary)

    generated = _GENERATED.search(summary)
    assert result.returncode == 0, f"schemathesis failed (seed {seed}):\n{output[-20000:]}"
    assert generated is not None, f"no case count in the output (seed {seed}):\n{summary}"
    assert int(generated.group(1)) >= MIN_CASES, f"only {generated.group(1)} cases (seed {seed})"
