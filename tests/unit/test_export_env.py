"""actions/setup/export_env.py: the pipeline's JSON settings and secrets become job environment variables safely."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "actions" / "setup" / "export_env.py"


def export(tmp_path: Path, secrets: object = None, settings: object = None, raw: str | None = None):
    env_file = tmp_path / "github_env"
    env_file.write_text("")
    env = {"PATH": os.environ["PATH"], "GITHUB_ENV": str(env_file)}
    if secrets is not None or raw is not None:
        env["PIPELINE_SECRETS"] = raw if raw is not None else json.dumps(secrets)
    if settings is not None:
        env["PIPELINE_ENV"] = json.dumps(settings)
    done = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True)
    return done, env_file.read_text()


def parse(text: str) -> dict[str, str]:
    """GITHUB_ENV's heredoc entries, as the runner reads them."""
    found, lines = {}, iter(text.splitlines())
    for line in lines:
        name, _, delimiter = line.partition("<<")
        value = []
        for part in lines:
            if part == delimiter:
                break
            value.append(part)
        found[name] = "\n".join(value)
    return found


def test_secrets_are_masked_and_exported_settings_are_not_masked(tmp_path):
    secret = "s3cr3t\nEVIL=1"
    done, text = export(tmp_path, {"NIGHTSCOUT_API_SECRET": secret}, {"NIGHTSCOUT_URL": "https://ns.example"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["::add-mask::s3cr3t", "::add-mask::EVIL=1"]
    assert parse(text) == {"NIGHTSCOUT_URL": "https://ns.example", "NIGHTSCOUT_API_SECRET": secret}
    assert "s3cr3t" not in done.stderr and "NIGHTSCOUT_API_SECRET" in done.stderr


def test_a_value_cannot_end_its_entry_early_and_set_another_variable(tmp_path):
    done, text = export(tmp_path, {"TOKEN_A": "x\nghadelimiter_1\nPATH=/evil"})
    assert done.returncode == 0
    assert parse(text) == {"TOKEN_A": "x\nghadelimiter_1\nPATH=/evil"}


def test_reserved_or_malformed_names_and_bad_json_are_refused_without_echoing_values(tmp_path):
    for bad in ({"PATH": "/evil"}, {"GITHUB_TOKEN": "x"}, {"LD_PRELOAD": "x"}, {"lower": "x"}, {"A": 1}, ["x"]):
        done, text = export(tmp_path, bad)
        assert done.returncode == 2 and text == "", (bad, done.stderr)
    done, text = export(tmp_path, raw='{"A": "hunter2"')
    assert done.returncode == 2 and "not valid JSON" in done.stderr and "hunter2" not in done.stderr + done.stdout
