"""`cascade init`: write a starting cascade.toml, or copy an example project."""

from __future__ import annotations

import shutil
from pathlib import Path

from cascade_ci.config import CONFIG_FILE
from cascade_ci.errors import ConfigError

SKIP = shutil.ignore_patterns(".cascade", "reports", "target", "logs", "__pycache__", "*.pyc", ".user.yml")

TEMPLATE = """\
# cascade-ci project config. Every key is optional; `cascade config check` shows what it resolves to.
# Strings may read the environment: ${{VAR}} or ${{VAR:-default}} (keep secrets there, not here).

# catalog = "local"          # local (embedded, no servers) | nessie | an entry point | module:attr
# ingest_hours = 48           # the window each run reads
# gates = ["schema", "pandera", "dbt", "freshness", "sql"]   # default: these, dbt only with a [transform]

# Where the data comes from: one table per source (python, dlt or files).
[sources.{source_name}]
{source_line}
namespace = "raw"
# keys = {{ orders = ["order_id"] }}     # upsert key per table: reruns add no duplicates
# options = {{ api_token = "${{API_TOKEN:-}}" }}
{transform}
# What the gates check, per table.
# [tables."raw.orders"]
# schema = "schemas/orders.yaml"       # a pandera schema: YAML file or module:attr
# unique = ["order_id"]
# freshness = {{ column = "ordered_at", warn_after_hours = 24, error_after_hours = 72 }}

# Custom SQL checks: the first value of the first row must equal `expect`.
# [[checks]]
# name = "no_negative_amounts"
# sql = "select count(*) from raw.orders where amount < 0"
# expect = 0
# severity = "error"                    # or "warn"
"""


def examples_dir() -> Path:
    """The examples shipped beside the package (in a checkout or an installed action)."""
    return Path(__file__).resolve().parents[1] / "examples"


def available_examples() -> list[str]:
    folder = examples_dir()
    return sorted(p.name for p in folder.iterdir() if (p / CONFIG_FILE).is_file()) if folder.is_dir() else []


def _dbt_project(target: Path) -> Path | None:
    found = sorted(target.glob("dbt_project.yml")) + sorted(target.glob("*/dbt_project.yml"))
    return found[0].parent if found else None


def _data_glob(target: Path) -> str | None:
    for pattern in ("data/*.csv", "data/*.parquet", "data/*.jsonl"):
        if any(target.glob(pattern)):
            return pattern
    return None


def render(target: Path) -> str:
    """A config for the project in `target`: its dbt project and data files when it has them."""
    project = _dbt_project(target)
    transform = ""
    if project is not None:
        relative = project.relative_to(target).as_posix() or "."
        transform = f'\n# Your dbt project, run on each branch.\n[transform]\nproject_dir = "{relative}"\n'
    glob = _data_glob(target)
    source_line = (
        f'files = "{glob}"' if glob else 'python = "my_pipeline.sources:read"   # or dlt = "...", files = "data/*.csv"'
    )
    return TEMPLATE.format(source_name="files" if glob else "main", source_line=source_line, transform=transform)


def init(target: Path, example: str | None = None, force: bool = False) -> list[Path]:
    """Write `target/cascade.toml` (or copy example `example` into `target`); return what was written."""
    target.mkdir(parents=True, exist_ok=True)
    if example is not None:
        source = examples_dir() / example
        if example not in available_examples():
            raise ConfigError(f"no example {example!r}; available: {', '.join(available_examples()) or 'none'}")
        clashes = [p for p in source.rglob("*") if p.is_file() and (target / p.relative_to(source)).exists()]
        if clashes and not force:
            raise ConfigError(f"{target / clashes[0].relative_to(source)} exists; pass --force to overwrite")
        shutil.copytree(source, target, ignore=SKIP, dirs_exist_ok=True)
        return sorted(p for p in target.rglob("*") if p.is_file())
    path = target / CONFIG_FILE
    if path.exists() and not force:
        raise ConfigError(f"{path} exists; pass --force to overwrite")
    path.write_text(render(target), encoding="utf-8")
    return [path]


# -- `cascade init --workflows`: the three short callers of cascade-ci's reusable workflows ---------

REPOSITORY = "cascade-ci/cascade-ci"  # where the reusable workflows and actions are published
REF = "v1"  # the moving major tag; pin a v1.x.y tag or a commit for fully repeatable runs

PIPELINE_CALLER = """\
# Write-Audit-Publish with cascade-ci: each run writes its own branch, the gates judge it, a passing
# verdict is promoted. Pull requests run on pr/<number> and get a data diff and one check per gate.
name: cascade
on:
  schedule: [{{cron: "17 5 * * *"}}]
  workflow_dispatch:
  pull_request:
    types: [opened, synchronize, reopened, closed]
permissions: {{}}
concurrency:
  group: cascade-${{{{ github.event.pull_request.number || github.ref }}}}
  cancel-in-progress: ${{{{ github.event_name == 'pull_request' }}}}
jobs:
  cascade:
    uses: {repository}/.github/workflows/wap.yml@{ref}
    permissions: {{contents: read, actions: read, checks: write, pull-requests: write}}
    with: {{config: {config}, pipeline-workflow: .github/workflows/{pipeline}, pipeline-env: "${{{{ toJSON(vars) }}}}"}}
    secrets: {{pipeline-secrets: "${{{{ secrets.PIPELINE_SECRETS }}}}"}}
"""

PROMOTE_CALLER = """\
# Promote a run by hand (dispatch with its id), or by a `/cascade promote <run id>` comment from a user
# listed in the config's `approvers` (for plans without environment reviewers).
name: cascade-promote
on:
  workflow_dispatch:
    inputs:
      run-id: {{description: The pipeline run id to promote., type: string, required: true}}
  issue_comment:
    types: [created]
permissions: {{}}
jobs:
  promote:
    uses: {repository}/.github/workflows/promote.yml@{ref}
    cache-mode: read
    permissions: {{contents: read, actions: read}}
    with: {{config: {config}, pipeline-workflow: .github/workflows/{pipeline}, run-id: "${{{{ inputs.run-id }}}}"}}
"""

GC_CALLER = """\
# Nightly: delete expired pipeline and pull-request branches, old history and unreferenced files.
name: cascade-gc
on:
  schedule: [{{cron: "41 3 * * *"}}]
  workflow_dispatch:
permissions: {{}}
jobs:
  gc:
    uses: {repository}/.github/workflows/gc.yml@{ref}
    permissions: {{contents: read, actions: read}}
    with: {{config: {config}}}
"""

WORKFLOWS = {"cascade.yml": PIPELINE_CALLER, "cascade-promote.yml": PROMOTE_CALLER, "cascade-gc.yml": GC_CALLER}


def _yaml_scalar(text: str) -> str:
    """`text` as a safe YAML flow scalar (JSON strings are YAML)."""
    import json

    return json.dumps(text)


def init_workflows(
    target: Path, *, config: str = CONFIG_FILE, repository: str = REPOSITORY, ref: str = REF, force: bool = False
) -> list[Path]:
    """Write the callers of cascade-ci's reusable workflows into `target/.github/workflows`; return them.

    Refuses (ConfigError) when one exists, unless `force`; writes none then.
    """
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repository) or ".." in repository:
        raise ConfigError(f"not a repository (owner/name): {repository!r}")
    if not re.fullmatch(r"[A-Za-z0-9_.][A-Za-z0-9_./-]*", ref) or ".." in ref:
        raise ConfigError(f"not a git ref: {ref!r}")
    folder = target / ".github" / "workflows"
    paths = {name: folder / name for name in WORKFLOWS}
    existing = [path for path in paths.values() if path.exists()]
    if existing and not force:
        raise ConfigError(f"{existing[0]} exists; pass --force to overwrite")
    folder.mkdir(parents=True, exist_ok=True)
    values = {"repository": repository, "ref": ref, "config": _yaml_scalar(config), "pipeline": "cascade.yml"}
    for name, template in WORKFLOWS.items():
        paths[name].write_text(template.format(**values), encoding="utf-8")
    return list(paths.values())
