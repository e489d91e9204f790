"""wap.yml's plan job decides whether a passing run promotes by itself: a run that ingests the generated
`sample` source (named in the `sources` input, or a default of the config when none is named) never does,
or anyone who may dispatch the pipeline could put sample data on main."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLES, PROJECT_LEFTOVERS, REPO


def plan_script() -> str:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "wap.yml").read_text(encoding="utf-8"))
    (step,) = [step for step in workflow["jobs"]["plan"]["steps"] if step.get("id") == "plan"]
    assert step["env"]["SOURCES"] == "${{ inputs.sources }}"
    return step["run"]


@pytest.mark.parametrize(
    ("event", "sources", "promote"),
    [
        ("workflow_dispatch", "nightscout,github", "true"),
        ("workflow_dispatch", "sample", "false"),
        ("workflow_dispatch", "nightscout, sample", "false"),
        ("schedule", "github,sample", "false"),
        ("schedule", "", "false"),  # the example's default source is sample
        ("workflow_dispatch", "samples", "true"),  # a name is matched whole
    ],
)
def test_the_plan_never_auto_promotes_sample_data(tmp_path: Path, event: str, sources: str, promote: str):
    root = tmp_path / "glucose-github"
    shutil.copytree(EXAMPLES / "glucose-github", root, ignore=shutil.ignore_patterns(*PROJECT_LEFTOVERS))
    output = tmp_path / "output"
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "CASCADE_HOME": str(tmp_path / "home"),
        "GITHUB_OUTPUT": str(output),
        "EVENT": event,
        "AUTO_PROMOTE_INPUT": "true",
        "AUTO_PROMOTE_ENABLED": "true",
        "SOURCES": sources,
    }
    done = subprocess.run(["bash", "-e", "-c", plan_script()], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert output.read_text() == f"promote={promote}\n", done.stdout
