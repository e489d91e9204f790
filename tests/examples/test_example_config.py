"""The glucose + GitHub example's cascade.toml: what it resolves to, from the variables the toolkit used to read."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cascade_ci.cli import cli
from cascade_ci.config import load_settings

RAW_NAMES = ["raw.github_repo_stats", "raw.github_user_events", "raw.glucose_entries"]
MART_NAMES = [
    "marts.fct_daily_glucose_metrics",
    "marts.fct_github_repo_stats",
    "marts.fct_github_user_events",
    "marts.fct_glucose_readings",
]


def test_example_config_defaults(glucose_project):
    settings = load_settings()
    assert settings.config_file == glucose_project / "cascade.toml"
    assert list(settings.sources) == ["sample", "nightscout", "github"]
    assert [name for name, source in settings.sources.items() if source.default] == ["sample"]
    assert settings.sources["sample"].options == {"seed": "7", "defects": "", "timezone": ""}
    assert settings.sources["nightscout"].options == {"url": "", "api_secret": "", "timezone": ""}
    assert settings.sources["github"].options == {
        "users": "octocat",
        "repos": "octocat/Hello-World",
        "token": "",
        "source_token": "",
        "api_url": "https://api.github.com",
        "stats_wait_s": "30",
    }
    assert settings.transform is not None
    assert settings.path(settings.transform.project_dir) == glucose_project / "dbt"
    assert settings.transform.vars == {"gmi_window_days": "14", "gmi_min_completeness_pct": "70"}
    assert sorted(settings.tables) == [*MART_NAMES, *RAW_NAMES]
    # cascade-ci's rejects gate judges the rejected records: glucose blocks past 5 %, GitHub only warns
    assert {table: settings.rejects_limit(table) for table in RAW_NAMES} == {
        "raw.github_repo_stats": 1.0,
        "raw.github_user_events": 1.0,
        "raw.glucose_entries": 0.05,
    }
    assert {table: settings.tables[table].schema_ for table in MART_NAMES} == {
        "marts.fct_daily_glucose_metrics": "glucose_github.schemas:FactDailyGlucoseMetrics",
        "marts.fct_github_repo_stats": "glucose_github.schemas:FactGitHubRepoStats",
        "marts.fct_github_user_events": "glucose_github.schemas:FactGitHubUserEvents",
        "marts.fct_glucose_readings": "glucose_github.schemas:FactGlucoseReadings",
    }
    freshness = settings.tables["raw.glucose_entries"].freshness
    assert freshness is not None and (freshness.column, freshness.warn_after_hours) == ("reading_timestamp", 24.0)
    assert [check.name for check in settings.checks] == ["readings_have_a_daily_row"]
    assert settings.gate_names == ["rejects", "schema", "pandera", "dbt", "freshness", "sql"]


def test_example_config_reads_the_variables_users_already_set(glucose_project, monkeypatch):
    monkeypatch.setenv("CASCADE_SAMPLE_SEED", "11")
    monkeypatch.setenv("CASCADE_SAMPLE_DEFECTS", "null_ids")
    monkeypatch.setenv("NIGHTSCOUT_URL", "https://cgm.example.org")
    monkeypatch.setenv("CASCADE_GITHUB_USERS", "hubot,monalisa")
    monkeypatch.setenv("GLUCOSE_FRESHNESS_HOURS", "6")
    monkeypatch.setenv("GLUCOSE_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("GLUCOSE_REJECTS_MAX_SHARE", "0.025")
    monkeypatch.setenv("GLUCOSE_GMI_WINDOW_DAYS", "28")
    monkeypatch.setenv("GH_SOURCE_TOKEN", "ghp_source0123456789")
    settings = load_settings()
    assert settings.sources["sample"].options["timezone"] == "Europe/Berlin"
    assert settings.sources["nightscout"].options["timezone"] == "Europe/Berlin"
    assert settings.sources["github"].options["source_token"] == "ghp_source0123456789"
    assert settings.transform is not None and settings.transform.vars["gmi_window_days"] == "28"
    assert settings.rejects_limit("raw.glucose_entries") == 0.025
    assert settings.sources["sample"].options == {"seed": "11", "defects": "null_ids", "timezone": "Europe/Berlin"}
    assert settings.sources["nightscout"].options["url"] == "https://cgm.example.org"
    assert settings.sources["github"].options["users"] == "hubot,monalisa"
    assert settings.tables["raw.glucose_entries"].freshness.warn_after_hours == 6.0  # type: ignore[union-attr]


def test_example_config_checks_clean_and_hides_its_secrets(glucose_project):
    env = {
        "GITHUB_TOKEN": "ghp_example0123456789",
        "GH_SOURCE_TOKEN": "ghp_source9876543210",
        "NIGHTSCOUT_API_SECRET": "cgm-secret-0123456789",
    }
    result = CliRunner().invoke(cli, ["config", "check", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stderr == f"{glucose_project / 'cascade.toml'}: ok\n"
    for secret in env.values():
        assert secret not in result.stdout
    resolved = json.loads(result.stdout)
    assert resolved["github_token"] == "***"
    assert resolved["sources"]["github"]["options"]["token"] == "***"
    assert resolved["sources"]["github"]["options"]["source_token"] == "***"
    assert resolved["sources"]["nightscout"]["options"]["api_secret"] == "***"
    assert resolved["sources"]["github"]["options"]["users"] == "octocat"
