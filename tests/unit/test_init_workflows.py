"""`cascade init --workflows`: short callers of the reusable workflows, valid YAML, never overwriting by accident."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from cascade_ci.cli import cli

NAMES = ("cascade.yml", "cascade-promote.yml", "cascade-gc.yml")


def load(path):
    data = yaml.safe_load(path.read_text())
    return data, data.get(True, data.get("on"))  # PyYAML reads the key `on` as True


def test_writes_three_short_callers_with_the_permissions_each_needs(tmp_path):
    done = CliRunner().invoke(cli, ["init", "--workflows", str(tmp_path), "--ref", "v1.2.3", "--json"])
    assert done.exit_code == 0, done.output
    folder = tmp_path / ".github" / "workflows"
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)

    pipeline, on = load(folder / "cascade.yml")
    assert len((folder / "cascade.yml").read_text().splitlines()) <= 20
    assert set(on) == {"schedule", "workflow_dispatch", "pull_request"}
    assert "closed" in on["pull_request"]["types"]  # the PR branch is deleted when the PR closes
    job = pipeline["jobs"]["cascade"]
    assert job["uses"] == "cascade-ci/cascade-ci/.github/workflows/wap.yml@v1.2.3"
    assert job["permissions"] == {"contents": "read", "actions": "read", "checks": "write", "pull-requests": "write"}
    assert pipeline["permissions"] == {}
    assert job["with"]["config"] == "cascade.toml"

    promote, on = load(folder / "cascade-promote.yml")
    job = promote["jobs"]["promote"]
    assert set(on) == {"workflow_dispatch", "issue_comment"}
    assert job["uses"].endswith("/.github/workflows/promote.yml@v1.2.3")
    assert job["permissions"] == {"contents": "read", "actions": "read"}
    assert job["cache-mode"] == "read"  # a comment-triggered run never writes a cache
    assert job["with"]["pipeline-workflow"] == ".github/workflows/cascade.yml"

    gc, _ = load(folder / "cascade-gc.yml")
    assert gc["jobs"]["gc"]["uses"].endswith("/.github/workflows/gc.yml@v1.2.3")
    assert gc["jobs"]["gc"]["permissions"] == {"contents": "read", "actions": "read"}


def test_refuses_to_overwrite_unless_forced(tmp_path):
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "cascade-gc.yml").write_text("mine\n")
    done = CliRunner().invoke(cli, ["init", "--workflows", str(tmp_path)])
    assert done.exit_code == 2 and "exists; pass --force" in done.output
    assert (folder / "cascade-gc.yml").read_text() == "mine\n"
    assert not (folder / "cascade.yml").exists()  # nothing written when one file is refused
    done = CliRunner().invoke(cli, ["init", "--workflows", "--force", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert "gc.yml@v1" in (folder / "cascade-gc.yml").read_text()


def test_the_config_path_comes_from_config_relative_to_the_repository(tmp_path, monkeypatch):
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "cascade.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(cli, ["--config", "pipelines/cascade.toml", "init", "--workflows"])
    assert done.exit_code == 0, done.output
    pipeline, _ = load(tmp_path / ".github" / "workflows" / "cascade.yml")
    assert pipeline["jobs"]["cascade"]["with"]["config"] == "pipelines/cascade.toml"


def test_a_ref_that_could_inject_yaml_is_refused(tmp_path):
    done = CliRunner().invoke(cli, ["init", "--workflows", str(tmp_path), "--ref", "v1\n    permissions: write-all"])
    assert done.exit_code == 2 and "not a git ref" in done.output
    assert not (tmp_path / ".github").exists()
