"""A short run of every benchmark, so they keep working; the figures themselves live in bench/RESULTS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench(name: str, *args: str, env: dict[str, str] | None = None) -> list[dict]:
    done = subprocess.run(
        [sys.executable, str(BENCH / name), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        cwd=BENCH.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout
    return lines


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("cli_startup.py", ("--runs", "2")),
        ("gc_scale.py", ("--small",)),
        ("pandera_throughput.py", ("--small",)),
        ("incremental_validation.py", ("--rows", "20000", "--append", "0.01", "--repeat", "1")),
        ("transform_scan.py", ("--smoke",)),
        ("storage_gc.py", ("--smoke",)),
        ("nightscout_ingest.py", ("--smoke",)),
        ("upsert.py", ("--smoke",)),
        ("concurrent_update.py", ("--smoke",)),
        ("setup_install.py", ("--smoke", "--runs", "1", "--methods", "uv")),
    ],
)
def test_quick_benches_run(name, args):
    assert all(isinstance(line, dict) for line in bench(name, *args))  # targets are judged on full runs


def test_zero_copy_bench_runs():
    summary = bench("zero_copy.py", "--small")[-1]
    assert summary["copy_vs_zero_copy_at_large"] > 1


def test_main_job_bench_runs():
    (line,) = bench("main_job.py", "--runs", "1")
    assert set(line["stage_median_s"]) == {"branch", "ingest", "transform", "validate", "promote"}


@pytest.fixture
def stack_env(stack, tmp_path) -> dict[str, str]:
    """The environment that points a benchmark at the running stack (CASCADE_STACK_ENV, as a user sets it)."""
    env_file = tmp_path / "stack.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in stack.items()))
    return {"CASCADE_STACK_ENV": str(env_file)}


def test_nessie_latency_bench_runs(stack_env):
    lines = bench("nessie_latency.py", "--repeat", "2", env=stack_env)
    assert [line["n"] for line in lines] == [2, 2]


def test_nessie_gc_scale_bench_runs(stack_env):
    (line,) = bench("nessie_gc_scale.py", "--branches", "40", env=stack_env)
    assert (line["deleted"], line["kept"]) == (20, 20)


def test_promote_refs_bench_runs(stack_env):
    *counts, summary = bench("promote_refs.py", "--refs", "10,40", "--repeat", "2", env=stack_env)
    assert [line["n"] for line in counts] == [2, 2] and counts[-1]["refs"] >= 40
    assert summary["to_refs"] == 40


def test_zero_copy_bench_runs_on_nessie(stack_env):
    summary = bench("zero_copy.py", "--nessie", "--small", "--repeat", "3", "--copy-repeat", "1", env=stack_env)[-1]
    assert summary["copy_vs_zero_copy_at_large"] > 1
