"""The `cascade` command: parse, build Settings, call one stage, map the result to an exit code.

Exit codes: 0 success/passed/promoted, 1 blocked or refused (a decision), 2 usage, configuration or
infrastructure error. With `--json`, stdout carries only the JSON payload; messages go to stderr.
Heavy libraries are imported inside the commands so that `cascade --help` starts fast.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog
    from cascade_ci.config import Settings
    from cascade_ci.github_api import GitHubApi

EXIT_OK, EXIT_DECISION, EXIT_ERROR = 0, 1, 2

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout; messages go to stderr.")
run_id_option = click.option(
    "--run-id",
    envvar="GITHUB_RUN_ID",
    required=True,
    metavar="ID",
    help="Workflow run id (default: $GITHUB_RUN_ID). Names the branch pipeline/run-ID.",
)


def target_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--run-id ID or --pr N (not both): the branch pipeline/run-ID, or a pull request's branch pr/N."""

    @functools.wraps(fn)
    def wrapper(*args: Any, run_id: str | None, pr_number: int | None, **kwargs: Any) -> Any:
        context = click.get_current_context()
        if pr_number is not None:
            if context.get_parameter_source("run_id") is click.core.ParameterSource.COMMANDLINE:
                raise click.UsageError("--run-id and --pr exclude each other: give one")
            from cascade_ci.naming import PR_PREFIX

            context.meta[_PREFIX_KEY] = PR_PREFIX
            run_id = str(pr_number)
        elif run_id is None:  # an empty one is refused by the stage, as any invalid id
            raise click.UsageError("give --run-id ID (or set GITHUB_RUN_ID), or --pr N for a pull request's branch")
        return fn(*args, run_id=run_id, **kwargs)

    options = [
        click.option(
            "--run-id",
            envvar="GITHUB_RUN_ID",
            metavar="ID",
            help="Workflow run id (default: $GITHUB_RUN_ID). Names the branch pipeline/run-ID.",
        ),
        click.option(
            "--pr",
            "pr_number",
            type=click.IntRange(min=1),
            metavar="N",
            help="Work on pull request N's branch pr/N instead (never promoted; excludes --run-id).",
        ),
    ]
    decorated: Callable[..., Any] = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


_PREFIX_KEY = "cascade.branch_prefix"
allow_empty_option = click.option(
    "--allow-empty",
    is_flag=True,
    help="Go on although the branch's last ingest failed or landed nothing (refused otherwise, exit 1).",
)


def _pairs(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{value!r} is not KEY=VALUE")
        pairs[key.strip()] = text
    return pairs


def source_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--source and --option, shared by `ingest` and `run`."""
    options = [
        click.option(
            "--source",
            "sources",
            multiple=True,
            metavar="NAME",
            help="A source declared in the config (repeat, or comma-separate; `all` for every one). "
            "Default: every source not marked `default = false`.",
        ),
        click.option(
            "-o",
            "--option",
            "options",
            multiple=True,
            metavar="KEY=VALUE",
            callback=_pairs,
            help="Set a source option for this run, over the config's `options` (e.g. -o defects=duplicate_ids).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _names(values: tuple[str, ...]) -> list[str]:
    """Repeated and comma-separated names as one list."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _safe(text: str) -> str:
    """`text` fit to print: URL credentials redacted, workflow commands from foreign text made inert."""
    from cascade_ci.errors import redact_urls
    from cascade_ci.github import neutralize

    return neutralize(redact_urls(text))


def _say(text: str) -> None:
    """One message on stderr (never on stdout, which may carry --json)."""
    click.echo(_safe(text), err=True)


def _emit(payload: Any, as_json: bool, text: str) -> None:
    if as_json:
        click.echo(_safe(json.dumps(payload, indent=2, sort_keys=True, default=str)))
    else:
        click.echo(_safe(text))


def command(fn: Callable[..., int | None]) -> Callable[..., None]:
    """Turn CascadeError into its exit code, as `{"type", "message"}` on stdout under --json."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        from cascade_ci.errors import CascadeError

        try:
            code = fn(*args, **kwargs) or EXIT_OK
        except CascadeError as e:
            if kwargs.get("as_json"):  # `details`: what a command had done before it failed
                details = getattr(e, "details", None) or {}
                payload = {"type": type(e).__name__, "message": str(e), **details}
                click.echo(_safe(json.dumps(payload, default=str)))
            _say(f"cascade: {e}")
            code = e.exit_code
        except click.ClickException:  # a bad option value found inside the command: click's usage error, exit 2
            raise
        except Exception as e:  # a bug or an unexpected fault: never exit 1, which means "a decision"
            import traceback

            _say(traceback.format_exc().rstrip())
            if kwargs.get("as_json"):
                click.echo(_safe(json.dumps({"type": type(e).__name__, "message": str(e)})))
            _say(f"cascade: unexpected {type(e).__name__}: {e}")
            code = EXIT_ERROR
        sys.exit(code)

    return wrapper


def _settings(**overrides: Any) -> Settings:
    """The settings of the project the group's --config (or the working directory) names."""
    from cascade_ci.config import load_settings

    context = click.get_current_context(silent=True)
    config = context.find_root().params.get("config") if context else None
    if context is not None and _PREFIX_KEY in context.meta:  # --pr: the pull request's branch pr/N
        overrides = {"branch_prefix": context.meta[_PREFIX_KEY], **overrides}
    return load_settings(config, **overrides)


def _open(**overrides: Any) -> tuple[Settings, BranchCatalog]:
    """Settings and the catalog they name; the catalog is closed when the command ends."""
    from cascade_ci.catalog import open_catalog

    settings = _settings(**overrides)
    catalog = open_catalog(settings)
    context = click.get_current_context(silent=True)
    close = getattr(catalog, "close", None)
    if context is not None and callable(close):
        context.call_on_close(close)
    return settings, catalog


def _provenance(run: Any) -> dict[str, str]:
    """Who and what promotes: the workflow run, its actor, and the environment's approvers if GitHub says."""
    from cascade_ci import github_api

    found = {"run_url": run.url, "actor": run.actor}
    api = github_api.from_env()
    if api is not None and run.run_id:
        with api:
            found["approvers"] = ",".join(api.approvers(run.run_id))
    return {key: value for key, value in found.items() if value}


def _approved(provenance: dict[str, str], login: str) -> dict[str, str]:
    """Provenance with `login` among the approvers (a comment approval, recorded as an environment one)."""
    from cascade_ci.github_api import valid_login

    if not valid_login(login):
        raise click.BadParameter(f"not a GitHub login: {login!r}", param_hint="--approved-by")
    approvers = [name for name in provenance.get("approvers", "").split(",") if name]
    return {**provenance, "approvers": ",".join(dict.fromkeys([*approvers, login])), "approved_by": login}


def _check_origin(run_id: str, workflow: str, default_branch: str | None) -> None:
    """Refuse (exit 1) unless GitHub says run `run_id` ran `workflow` on the default branch."""
    from cascade_ci import github_api
    from cascade_ci.errors import ConfigError
    from cascade_ci.run_origin import check_origin

    api = github_api.from_env()
    if api is None or not default_branch:
        raise ConfigError(
            "--pipeline-workflow needs GITHUB_TOKEN, GITHUB_REPOSITORY and --default-branch (CASCADE_DEFAULT_BRANCH)"
        )
    with api:
        origin = check_origin(api, run_id, default_branch=default_branch, workflow=workflow)
    click.echo(f"run {origin.run_id}: {origin.path} on {origin.head_branch} ({origin.event})", err=True)


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as e:
        raise click.BadParameter(f"not an ISO-8601 time: {value!r}", param_hint="--now") from e
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="cascade-ci", prog_name="cascade")
@click.option(
    "--config",
    envvar="CASCADE_CONFIG",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The project config [default: the nearest cascade.toml, or pyproject.toml with [tool.cascade], "
    "from the working directory up].",
)
def cli(config: Path | None) -> None:
    """Write-Audit-Publish for Iceberg tables: branch, write, validate, promote.

    Every workflow run writes to its own zero-copy branch pipeline/run-ID; gates judge the branch
    head; a passing verdict lets `promote` fast-forward main to exactly that data and tag it.

    Your project declares its sources, dbt project, schemas and checks in cascade.toml (`cascade init`
    writes one; `cascade config check` shows what it resolves to). Flags win over environment
    variables, which win over .env, which wins over the config file.

    \b
    Exit codes: 0 ok, 1 blocked or refused, 2 usage/configuration/infrastructure error.
    """


@cli.command()
@target_options
@click.option(
    "--attempt",
    envvar="GITHUB_RUN_ATTEMPT",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Run attempt (default: $GITHUB_RUN_ATTEMPT). A rerun reuses the run's branch.",
)
@click.option("--recreate", is_flag=True, help="Drop the run's branch and start it afresh from main.")
@click.option("--delete", is_flag=True, help="Delete the pull request's branch pr/N (with --pr only; 0 when absent).")
@json_option
@command
def branch(run_id: str, attempt: int, recreate: bool, delete: bool, as_json: bool) -> None:
    """Create (or reuse) the run's branch from main and print its name.

    Writes the job outputs branch, base_hash, head_hash, attempt and action when $GITHUB_OUTPUT is set.
    With --pr N the branch is pr/N (`--recreate` on each push; `--delete` when the pull request closes).
    """
    from cascade_ci import github
    from cascade_ci.stages.branch import create_run_branch, delete_pr_branch

    settings, catalog = _open()
    if delete:
        if recreate:
            raise click.UsageError("--delete and --recreate exclude each other")
        deleted = delete_pr_branch(settings, catalog, run_id)
        click.echo(f"{deleted.action} {deleted.branch}", err=True)
        _emit(deleted.to_dict(), as_json, deleted.action)
        return
    result = create_run_branch(settings, catalog, run_id, attempt=attempt, recreate=recreate)
    github.write_outputs(result.outputs())
    click.echo(f"{result.action} {result.branch} at {result.head_hash[:12]} (base {result.base_hash[:12]})", err=True)
    _emit(result.to_dict(), as_json, result.branch)


@cli.command()
@target_options
@source_options
@json_option
@command
def ingest(run_id: str, sources: tuple[str, ...], options: dict[str, str], as_json: bool) -> None:
    """Read the project's sources and write their tables onto the run's branch.

    Each table is upserted on its key (the source's `keys`, else the table's `unique`), so reruns add no
    duplicates; a table without a key is appended to. The window is the last `ingest_hours` (48). Every
    source is read before anything is written, and all tables land in one ref move: a failed write
    leaves the branch as it was. Only a pipeline branch cascade-ci created is written (else exit 1); a
    branch that moved meanwhile gets nothing (exit 2: ingest again).

    A record a source cannot read goes, with the reason, to the table's rejects table (`TABLE__rejects`);
    the `rejects` gate blocks when they pass the table's `rejects_max_share` (default 0: any). The outcome
    (landed, empty, failed) is recorded on the branch: transform, validate and promote refuse a branch
    whose last ingest failed or landed nothing unless given --allow-empty.
    """
    from cascade_ci import github
    from cascade_ci.stages.ingest import ingest as run_ingest
    from cascade_ci.stages.ingest import ingested_line

    settings, catalog = _open()
    result = run_ingest(settings, catalog, run_id, sources=_names(sources), options=options)
    github.write_outputs(result.outputs())
    rows = ingested_line(result)
    click.echo(f"ingested into {result.branch}: {rows or 'nothing'}", err=True)
    _emit(result.to_dict(), as_json, rows)


@cli.command()
@target_options
@click.option("--reports-dir", type=click.Path(file_okay=False), help="Where reports go (default: reports).")
@json_option
@command
def diff(run_id: str, reports_dir: str | None, as_json: bool) -> None:
    """Diff the branch's data against main where it forked, table by table, by key.

    Per table: rows added, removed and changed, matched on the table's key (`unique` of [tables.X], else
    its source's `keys`; whole rows when it has none), columns added, removed or re-typed, and up to 5
    sample keys per kind. Only keys and column names are shown, never other values. Writes diff.md (which
    `cascade comment` appends) and diff.json into the reports folder.
    """
    from cascade_ci import github
    from cascade_ci.stages.diff import diff_branch, write_reports

    settings, catalog = _open(reports_dir=Path(reports_dir).resolve() if reports_dir else None)
    result = diff_branch(settings, catalog, run_id)
    paths = write_reports(result, settings.path(settings.reports_dir))
    github.write_outputs({**result.outputs(), "diff_path": str(paths["markdown"])})
    click.echo(
        f"{len(result.tables)} table(s) of {result.branch} differ from {result.base_ref}; {paths['markdown']}", err=True
    )
    _emit(result.to_dict(), as_json, paths["markdown"].read_text(encoding="utf-8"))


@cli.command()
@target_options
@allow_empty_option
@json_option
@command
def transform(run_id: str, allow_empty: bool, as_json: bool) -> None:
    """Run the project's dbt project on the run's branch and record every dbt test there.

    Every model, seed and snapshot dbt materializes as a table becomes an Iceberg table of the branch;
    incremental models append (or merge) instead of being rebuilt.

    A model that fails to build stops the stage (exit 2) and publishes nothing; failing data tests
    do not stop it: the dbt gate of `cascade validate` judges them.
    """
    from cascade_ci import github
    from cascade_ci.stages.transform import transform as run_transform

    settings, catalog = _open()
    result = run_transform(settings, catalog, run_id, allow_empty=allow_empty)
    github.write_outputs(result.outputs())
    if result.state_from:
        click.echo(
            f"dbt built state:modified+ against the manifest stored on main at {result.state_from[:12]}", err=True
        )
    elif result.branch.startswith("pr/"):
        click.echo("dbt built everything: main has no stored dbt manifest to compare against", err=True)
    tests = ", ".join(f"{count} {status}" for status, count in sorted(result.tests.items()))
    click.echo(f"built {len(result.rows)} tables on {result.branch}; dbt tests: {tests or 'none'}", err=True)
    _emit(result.to_dict(), as_json, tests)


@cli.command()
@target_options
@click.option("--gates", metavar="LIST", help="Comma-separated gates to run (default: $CASCADE_GATES).")
@click.option("--reports-dir", type=click.Path(file_okay=False), help="Where reports go (default: reports).")
@click.option("--full", is_flag=True, help="Validate every row, even of tables the branch only appended to.")
@allow_empty_option
@json_option
@command
def validate(
    run_id: str, gates: str | None, reports_dir: str | None, full: bool, allow_empty: bool, as_json: bool
) -> int:
    """Run the gates on the run's branch head and store the verdict on the branch.

    Writes junit.xml, summary.md and verdict.json to the reports folder, appends the summary to
    $GITHUB_STEP_SUMMARY and the outputs (verdict, blocked, errors, warnings, ...) to $GITHUB_OUTPUT.
    Exits 1 when the verdict blocks promotion, 2 when the branch moved while validating (run it again).
    """
    from cascade_ci import github
    from cascade_ci.stages.validate import publish
    from cascade_ci.stages.validate import validate as run_validation

    settings, catalog = _open(gates=gates, reports_dir=Path(reports_dir).resolve() if reports_dir else None)
    verdict = run_validation(
        settings, catalog, run_id, run_url=github.RunContext.from_env().url, full=full, allow_empty=allow_empty
    )
    paths = publish(verdict, settings.path(settings.reports_dir), annotations=sys.stderr if as_json else sys.stdout)
    click.echo(
        f"verdict {verdict.outcome}: {verdict.errors} errors, {verdict.warnings} warnings, "
        f"{verdict.check_count} checks; reports in {paths['summary'].parent}",
        err=True,
    )
    _emit(verdict.to_dict(), as_json, verdict.outcome)
    return EXIT_DECISION if verdict.blocked else EXIT_OK


@cli.command()
@run_id_option
@click.option("--dry-run", is_flag=True, help="Say what would happen; change nothing.")
@click.option(
    "--update",
    is_flag=True,
    help="When main moved, bring the branch up to date (`cascade update`) and try again, a few times.",
)
@click.option(
    "--approved-by",
    metavar="LOGIN",
    help="Record LOGIN as the approver in main's history, as an environment approval is (`cascade approve`'s output).",
)
@click.option(
    "--pipeline-workflow",
    envvar="CASCADE_PIPELINE_WORKFLOW",
    metavar="PATH",
    help="Promote only a run of this workflow file (.github/workflows/NAME.yml, or a workflow ref) on the "
    "default branch, as GitHub's API says (needs GITHUB_TOKEN, GITHUB_REPOSITORY) "
    "[env CASCADE_PIPELINE_WORKFLOW; the workflows set it].",
)
@click.option(
    "--default-branch",
    envvar="CASCADE_DEFAULT_BRANCH",
    metavar="NAME",
    help="The repository's default branch, for --pipeline-workflow [env CASCADE_DEFAULT_BRANCH].",
)
@allow_empty_option
@json_option
@command
def promote(
    run_id: str,
    dry_run: bool,
    update: bool,
    approved_by: str | None,
    pipeline_workflow: str | None,
    default_branch: str | None,
    allow_empty: bool,
    as_json: bool,
) -> None:
    """Fast-forward main to the run's validated branch head and tag it prod-YYYYMMDD-HHMMSS.

    Refuses (exit 1) unless cascade-ci created the branch, its newest verdict passed and judged exactly
    the tables at the branch head (compared by content), and main has not moved since the branch forked.
    Promoting an already promoted run only finishes what an interrupted promotion left (exit 0).
    With --update, a branch main moved away from is re-based onto main and validated again (reports
    as `cascade validate` writes them), then promoted; a table both sides changed other than by
    appends is a conflict (exit 1).
    """
    from cascade_ci import github
    from cascade_ci.stages.promote import promote as run_promotion

    if pipeline_workflow:
        _check_origin(run_id, pipeline_workflow, default_branch)
    settings, catalog = _open()
    run = github.RunContext.from_env()
    provenance = _provenance(run)
    if approved_by:
        provenance = _approved(provenance, approved_by)
    result = run_promotion(
        settings,
        catalog,
        run_id,
        dry_run=dry_run,
        provenance=provenance,
        update=update,
        run_url=run.url,
        report=_reporter(settings, as_json),
        allow_empty=allow_empty,
    )
    github.write_outputs(result.outputs())
    _say(result.message)
    _emit(result.to_dict(), as_json, result.tag or result.action)


@cli.command(name="run")
@click.option(
    "--run-id", envvar="GITHUB_RUN_ID", metavar="ID", help="Run id (default: $GITHUB_RUN_ID, else a new local id)."
)
@source_options
@allow_empty_option
@json_option
@command
def run_command(
    run_id: str | None, sources: tuple[str, ...], options: dict[str, str], allow_empty: bool, as_json: bool
) -> int:
    """Run the whole pipeline: branch, ingest, transform, validate, then promote if the verdict passes.

    Promotion happens only when AUTO_PROMOTE_ENABLED is true. Exit 0 when the run passed (promoted or
    not), 1 when it was blocked or its promotion refused, 2 on errors. Reports go to CASCADE_REPORTS_DIR.
    """
    from cascade_ci import github
    from cascade_ci.naming import local_run_id
    from cascade_ci.stages.run import run_pipeline

    settings, catalog = _open()
    run = github.RunContext.from_env()
    run_id = run_id or local_run_id(datetime.now(UTC))
    provenance = _provenance(run)
    result = run_pipeline(
        settings,
        catalog,
        run_id,
        sources=_names(sources),
        options=options,
        annotations=sys.stderr if as_json else sys.stdout,
        say=_say,
        run_url=run.url,
        provenance=provenance,
        allow_empty=allow_empty,
    )
    total = sum(result.stages.values())
    summary = settings.path(settings.reports_dir) / "summary.md"
    click.echo(f"run {run_id}: {result.outcome} in {total:.1f} s; summary: {summary}", err=True)
    _emit(result.to_dict(), as_json, result.outcome)
    return EXIT_OK if result.outcome in ("promoted", "passed") else EXIT_DECISION


@cli.command()
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--now", "now_text", metavar="ISO", help="Judge ages as of this ISO-8601 time (default: now).")
@click.option(
    "--files",
    is_flag=True,
    help="Also expire main's history and prod-* tags past retention, and delete warehouse files no retained "
    "commit of any ref needs (older than GC_GRACE_HOURS).",
)
@json_option
@command
def gc(dry_run: bool, now_text: str | None, files: bool, as_json: bool) -> int:
    """Delete pipeline branches past retention; with --files, storage past retention too.

    Passed or promoted runs are kept BRANCH_RETENTION_DAYS (7), failed or unvalidated runs
    BRANCH_RETENTION_DAYS_FAILED (14), from their last commit. Main, tags, and branches cascade-ci
    did not create are never touched.

    --files: main's history is kept MAIN_RETENTION_DAYS (30) or back to its MAIN_RETENTION_PROMOTIONS (10)th
    newest promotion, whichever keeps more (older commits are cut from the embedded catalog's history;
    Nessie's log keeps them, unreadable once their files are gone). prod-* tags are kept TAG_RETENTION_DAYS
    (90) or while among the TAG_RETENTION_COUNT (20) newest; never the newest, never one a retained rollback
    restored. Then warehouse files no retained commit of any ref needs are deleted if older than
    GC_GRACE_HOURS (24) and than any write in progress. --now moves retention, never the files' cutoff
    past the wall clock. Exit 2 if some file could not be deleted.

    With GITHUB_TOKEN (or GH_SOURCE_TOKEN) and GITHUB_REPOSITORY, a branch whose workflow run is still
    running is kept; a run GitHub could not tell about keeps its branch (status unknown). Each deletion
    is told on stderr as it happens; under --json an error payload lists the deletions made before it.
    """
    from cascade_ci import github, github_api
    from cascade_ci.errors import CascadeError
    from cascade_ci.stages.gc import collect_garbage, collect_storage

    now = _parse_now(now_text)
    settings, catalog = _open()
    api = github_api.from_env()
    if api is None:
        missing = "GITHUB_TOKEN (or GH_SOURCE_TOKEN)" if not github_api.token_from_env() else "GITHUB_REPOSITORY"
        click.echo(
            f"cascade gc: warning: {missing} is not set: workflow runs still in progress cannot be seen, "
            "so a running pipeline's branch is judged by its age alone",
            err=True,
        )
    deleted: list[Any] = []

    def told(decision: Any) -> None:
        if decision.action == "deleted":
            deleted.append(decision)
        if decision.action == "deleted" or decision.status == "unknown":
            click.echo(_gc_line(decision), err=True)

    try:
        decisions = collect_garbage(
            settings, catalog, now, dry_run=dry_run, runs=api.workflow_run if api else None, report=told
        )
    except CascadeError as e:
        e.details = {"deleted": [d.to_dict() for d in deleted]}  # type: ignore[attr-defined]
        raise
    lines = [_gc_line(d) for d in decisions]
    deleted = sum(d.action in ("deleted", "would-delete") for d in decisions)
    outputs = {"deleted": str(deleted), "kept": str(len(decisions) - deleted)}
    click.echo(f"{deleted} of {len(decisions)} pipeline branches {'would be ' if dry_run else ''}deleted", err=True)
    if not files:
        github.write_outputs(outputs)
        _emit([d.to_dict() for d in decisions], as_json, "\n".join(lines))
        return EXIT_OK
    storage = collect_storage(settings, catalog, now, dry_run=dry_run, branches=decisions)
    github.write_outputs({**outputs, **storage.outputs()})
    click.echo(storage.summary(), err=True)
    payload = {"branches": [d.to_dict() for d in decisions], **storage.to_dict()}
    _emit(payload, as_json, "\n".join([*lines, *storage.lines()]))
    return EXIT_ERROR if storage.files.failed else EXIT_OK


def _report_option(flag: str, name: str, what: str, default: str) -> Callable[..., Any]:
    """An option naming a report file, by default the one `cascade validate` wrote into the reports folder."""
    return click.option(
        flag,
        name,
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"{what} [default: {default} in CASCADE_REPORTS_DIR, as `cascade validate` wrote it].",
    )


def _report_file(path: Path | None, default: str, flag: str) -> tuple[Settings, Path]:
    """Settings, and the report file `path` names (else `default` in the reports folder); ConfigError if absent."""
    from cascade_ci.errors import ConfigError

    settings = _settings()
    path = path or settings.path(settings.reports_dir) / default
    if not path.is_file():
        raise ConfigError(f"no {default} at {path}: run `cascade validate` first, or pass {flag}")
    return settings, path


def _github(purpose: str) -> GitHubApi:
    """The repository's REST API from GITHUB_TOKEN and GITHUB_REPOSITORY; ConfigError when they are not set."""
    from cascade_ci import github_api
    from cascade_ci.errors import ConfigError

    api = github_api.from_env()
    if api is None:
        raise ConfigError(f"GITHUB_TOKEN and GITHUB_REPOSITORY must be set to {purpose}")
    return api


def _gc_line(decision: Any) -> str:
    d = decision
    return f"{d.action:12} {d.branch}  {d.status}, {d.age_days:.1f} d old: {d.reason}"


@cli.command()
@click.option("--pr", "pr_number", type=click.IntRange(min=1), required=True, help="Pull request number.")
@_report_option("--summary", "summary_path", "The Markdown to post", "summary.md")
@json_option
@command
def comment(pr_number: int, summary_path: Path | None, as_json: bool) -> None:
    """Post the verdict on a pull request as one sticky comment, updated in place on every run.

    The comment is summary.md, then diff.md (`cascade diff`) when the reports folder has one. Only a comment
    this token wrote (its marker and its author) is ever edited. Needs GITHUB_TOKEN (with pull-requests: write)
    and GITHUB_REPOSITORY, as set in GitHub Actions.
    """
    settings, summary_path = _report_file(summary_path, "summary.md", "--summary")
    api = _github("comment on a pull request")
    body = summary_path.read_text(encoding="utf-8")
    diff = settings.path(settings.reports_dir) / "diff.md"
    if diff.is_file():
        body = f"{body.rstrip()}\n\n{diff.read_text(encoding='utf-8')}"
    with api:
        action = api.upsert_comment(pr_number, body)
    click.echo(f"{action} the verdict comment on pull request #{pr_number}", err=True)
    _emit({"action": action, "pr": pr_number}, as_json, action)


@cli.command()
@click.option(
    "--sha",
    envvar="GITHUB_SHA",
    required=True,
    metavar="SHA",
    help="The commit the check runs belong to (default: $GITHUB_SHA; a pull request job passes its head sha).",
)
@_report_option("--verdict", "verdict_path", "The verdict", "verdict.json")
@json_option
@command
def checks(sha: str, verdict_path: Path | None, as_json: bool) -> None:
    """Create one completed check run per gate, `cascade / <gate>`, so branch protection can require any.

    success when the gate passed, neutral with warnings only, failure when it blocks or could not run; its
    failing checks become annotations. Needs GITHUB_TOKEN (with checks: write) and GITHUB_REPOSITORY.
    """
    import re

    from cascade_ci.report.checks import check_runs
    from cascade_ci.verdict import Verdict

    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha):
        raise click.BadParameter(f"not a commit sha: {sha!r}", param_hint="--sha")
    settings, verdict_path = _report_file(verdict_path, "verdict.json", "--verdict")
    verdict = Verdict.from_json(verdict_path.read_text(encoding="utf-8"))
    api = _github("create check runs")
    config = settings.config_file
    fallback = (
        config.relative_to(settings.root).as_posix()
        if config and config.is_relative_to(settings.root)
        else "cascade.toml"
    )
    created = []
    with api:
        for run, notes in check_runs(verdict, sha, fallback):
            created.append(
                {"name": run["name"], "conclusion": run["conclusion"], "id": api.create_check_run(run, notes)}
            )
            click.echo(f"{run['name']}: {run['conclusion']} ({len(notes)} annotations)", err=True)
    _emit(created, as_json, "\n".join(f"{c['name']} {c['conclusion']}" for c in created))


@cli.command()
@click.option(
    "--event",
    "event_path",
    envvar="GITHUB_EVENT_PATH",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The issue_comment event payload (default: $GITHUB_EVENT_PATH).",
)
@json_option
@command
def approve(event_path: Path, as_json: bool) -> None:
    """Accept a `/cascade promote <run id>` comment as a promotion approval, for repositories without
    environment reviewers.

    It counts when its author is listed in the config's `approvers` (CASCADE_APPROVERS), is a user with
    write, maintain or admin permission (asked of the API), and the comment is in this repository, not a
    fork's. Then writes the outputs run-id and approver ($GITHUB_OUTPUT) and exits 0; pass them on as
    `cascade promote --run-id ID --approved-by LOGIN`. Anything else is ignored: exit 1, nothing written.
    """
    from cascade_ci import github
    from cascade_ci.approval import judge, read_event

    settings = _settings()
    event = read_event(event_path)
    api = _github("check the commenter's permission")
    with api:
        approval = judge(event, settings.approvers, api)
    github.write_outputs(approval.outputs())
    click.echo(f"{approval.approver} approved promoting run {approval.run_id}", err=True)
    _emit(approval.to_dict(), as_json, f"run-id={approval.run_id}\napprover={approval.approver}")


def _shown(properties: Any) -> dict[str, str]:
    """Commit properties as `refs` and `log` print them: a stored dbt manifest by its size only."""
    from cascade_ci.branch_state import DBT_MANIFEST

    shown = dict(properties)
    if DBT_MANIFEST in shown:
        shown[DBT_MANIFEST] = f"<dbt manifest, {len(shown[DBT_MANIFEST]):,d} characters gzip+base64>"
    return shown


@cli.command()
@click.option("--prefix", default="", help="Only refs whose name starts with this.")
@json_option
@command
def refs(prefix: str, as_json: bool) -> None:
    """List branches and tags with their head hash and cascade metadata."""
    _, catalog = _open()
    rows = []
    for ref in catalog.list_refs(prefix):
        head = catalog.log(ref.hash, limit=1)[0]
        rows.append(
            {
                "name": ref.name,
                "kind": str(ref.kind),
                "hash": ref.hash,
                "time": head.time.isoformat(),
                "message": head.message,
                "properties": _shown(head.properties),
            }
        )
    text = "\n".join(f"{r['kind']:6} {r['hash'][:12]}  {r['name']}  ({r['message']})" for r in rows)
    _emit(rows, as_json, text)


@cli.command()
@click.argument("ref", required=False)
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many commits.")
@json_option
@command
def log(ref: str | None, limit: int, as_json: bool) -> None:
    """Show a ref's history, newest first (default: main). REF: a branch, a tag, a commit hash or REF@HASH."""
    from cascade_ci.naming import validate_ref_spec

    if ref is not None:
        validate_ref_spec(ref)
    settings, catalog = _open()
    commits = catalog.log(ref or settings.main_branch, limit=limit)
    rows = [
        {
            "hash": c.hash,
            "parents": list(c.parents),
            "time": c.time.isoformat(),
            "message": c.message,
            "properties": _shown(c.properties),
        }
        for c in commits
    ]
    text = "\n".join(f"{c.hash[:12]} {c.time:%Y-%m-%d %H:%M:%S} {c.message}" for c in commits)
    _emit(rows, as_json, text)


@cli.command()
@click.option("--to", "tag", required=True, metavar="TAG", help="The promotion tag to go back to.")
@json_option
@command
def rollback(tag: str, as_json: bool) -> None:
    """Make main's tables equal to TAG's again, as a new commit on main (no history is lost)."""
    from cascade_ci.stages.rollback import rollback as run_rollback

    settings, catalog = _open()
    result = run_rollback(settings, catalog, tag)
    click.echo(f"{settings.main_branch} restored to {tag} as {result.main_after[:12]}", err=True)
    _emit(result.to_dict(), as_json, result.main_after)


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--example", metavar="NAME", help="Copy an example project instead (e.g. glucose-github, minimal).")
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
@click.option(
    "--workflows",
    is_flag=True,
    help="Write the GitHub workflows instead: .github/workflows/cascade.yml (runs, pull requests), "
    "cascade-promote.yml (by hand or by an approver's comment) and cascade-gc.yml, each a short caller of "
    "cascade-ci's reusable workflows.",
)
@click.option(
    "--ref",
    default="v1",
    show_default=True,
    help="With --workflows: the cascade-ci release the callers use (v1 moves with v1.x.y; pin a tag or commit).",
)
@json_option
@command
def init(directory: Path | None, example: str | None, force: bool, workflows: bool, ref: str, as_json: bool) -> None:
    """Write a cascade.toml for the project in DIRECTORY (default: here), or copy an example project.

    The config names a dbt project and data files when it finds them (dbt_project.yml, data/*.csv);
    edit it, then `cascade config check` and `cascade run`. With --workflows, write the GitHub
    workflows that run it (then create the environments and secrets the README lists).
    """
    from cascade_ci.scaffold import init as scaffold
    from cascade_ci.scaffold import init_workflows

    if workflows:
        import os

        root = (directory or Path.cwd()).resolve()
        config = click.get_current_context().find_root().params.get("config")  # --config / CASCADE_CONFIG
        relative = Path(os.path.relpath(Path(config).resolve(), root)).as_posix() if config else "cascade.toml"
        if relative.startswith("../"):
            raise click.BadParameter(f"{config} is outside {root}", param_hint="--config")
        written = init_workflows(root, config=relative, ref=ref, force=force)
    else:
        written = scaffold(directory or Path.cwd(), example=example, force=force)
    click.echo(f"wrote {len(written)} file(s) in {(directory or Path.cwd()).resolve()}", err=True)
    _emit([str(path) for path in written], as_json, "\n".join(str(path) for path in written))


@cli.group()
def config() -> None:
    """Inspect the project config (cascade.toml or [tool.cascade] in pyproject.toml)."""


@config.command()
@json_option
@command
def check(as_json: bool) -> None:
    """Validate the config and everything it names; print it resolved, with secrets masked.

    Loads every source, schema, gate, catalog and engine the config names (no data is read). Exits 2
    naming the file, the key and the problem when anything does not resolve.

    \b
    Top-level keys (each also an environment variable, shown in brackets):
      catalog [CASCADE_CATALOG]  engine [CASCADE_ENGINE]  home [CASCADE_HOME]
      reports_dir [CASCADE_REPORTS_DIR]  branch_prefix [CASCADE_BRANCH_PREFIX]
      main_branch [ICEBERG_NESSIE_REF]  gates [CASCADE_GATES]  required_gates [CASCADE_REQUIRED_GATES]
      ingest_hours [CASCADE_INGEST_HOURS]  rejects_max_share [CASCADE_REJECTS_MAX_SHARE]
      auto_promote_enabled  approvers [CASCADE_APPROVERS]  freshness_blocks_promotion
      pandera_critical_level  validation_retry_enabled  validation_retry_max_attempts
      validation_retry_delay_seconds  branch_retention_days  branch_retention_days_failed
      main_retention_days  main_retention_promotions  tag_retention_days  tag_retention_count  gc_grace_hours
      nessie_uri  nessie_warehouse  nessie_timeout  s3_endpoint  s3_region  trino_uri  trino_user
      nessie_auth (none|bearer|oauth2)  nessie_oauth2_token_url  nessie_oauth2_client_id  nessie_oauth2_scope
      trino_catalog_secrets (inline|env); secrets from the environment: nessie_token [NESSIE_TOKEN]
      nessie_oauth2_client_secret [NESSIE_OAUTH2_CLIENT_SECRET]
    Tables: [sources.NAME] [transform] [tables."ns.table"] [[checks]] [gate_options.GATE]
    (see the README's "Use it for your own pipeline").
    """
    from cascade_ci.config import masked
    from cascade_ci.config_check import problems
    from cascade_ci.errors import ConfigError

    settings = _settings()
    found = problems(settings)
    if found:
        raise ConfigError(f"{len(found)} problem(s):\n  " + "\n  ".join(found))
    resolved = masked(settings)
    click.echo(f"{settings.config_file or 'no config file found'}: ok", err=True)
    _emit(resolved, as_json, json.dumps(resolved, indent=2, sort_keys=True, default=str))


@config.command(name="get")
@click.argument("key")
@json_option
@command
def config_get(key: str, as_json: bool) -> None:
    """Print one resolved top-level setting, e.g. `cascade config get auto_promote_enabled`.

    Booleans print as true/false, an unset value as an empty line, tables (e.g. `transform`) as JSON.

    The workflows read settings through this, so a value means the same in a job's `if:` as in Python
    (AUTO_PROMOTE_ENABLED=0, no or off is false in both). Secrets print masked.
    """
    from cascade_ci.config import masked
    from cascade_ci.errors import ConfigError

    resolved = masked(_settings())
    if key not in resolved:
        raise ConfigError(f"no top-level setting {key!r}; `cascade config check` lists them")
    value = resolved[key]
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    _emit({key: value}, as_json, text)


def _reporter(settings: Settings, as_json: bool) -> Callable[[Any], None]:
    """Publish a verdict as `cascade validate` does: reports, job summary, outputs, annotations."""
    from cascade_ci.stages.validate import publish

    def report(verdict: Any) -> None:
        publish(verdict, settings.path(settings.reports_dir), annotations=sys.stderr if as_json else sys.stdout)

    return report


@cli.command()
@run_id_option
@click.option("--reports-dir", type=click.Path(file_okay=False), help="Where reports go (default: reports).")
@json_option
@command
def update(run_id: str, reports_dir: str | None, as_json: bool) -> int:
    """Bring the run's branch up to date with main, and validate it again.

    The branch is re-based onto main's head: tables only the branch changed are carried over, and a
    table both sides only appended to gets the branch's data files appended again onto main's version
    (no rewrite, no copy). Any other table changed on both sides is a conflict naming the table and
    what each side did (exit 1), unless the project's transform builds it: the transform is re-run on
    the updated branch. Then the gates judge the new head (incrementally where the branch only
    appended) and the verdict is stored as `cascade validate` stores it. Exit 1 when it blocks.
    """
    from cascade_ci import github
    from cascade_ci.stages.update import update as run_update

    settings, catalog = _open(reports_dir=Path(reports_dir).resolve() if reports_dir else None)
    run = github.RunContext.from_env()
    result = run_update(settings, catalog, run_id, run_url=run.url, report=_reporter(settings, as_json))
    github.write_outputs(result.outputs())
    _say(result.message)
    _emit(result.to_dict(), as_json, result.action)
    return EXIT_DECISION if result.verdict == "blocked" else EXIT_OK


@cli.command()
@click.option(
    "--nessie-config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="The Nessie server's configuration as deployed: its application.properties, or a docker-compose.yml "
    "with a Nessie service. Nessie does not report its version store; doctor judges it from here.",
)
@click.option(
    "--nessie-store",
    envvar="NESSIE_VERSION_STORE_TYPE",
    metavar="TYPE",
    help="The server's nessie.version.store.type, when there is no file to name (default: $NESSIE_VERSION_STORE_TYPE).",
)
@click.option(
    "--nessie-management",
    envvar="NESSIE_MANAGEMENT_URI",
    metavar="URL",
    help="Nessie's management port (default: $NESSIE_MANAGEMENT_URI): a repository older than the running "
    "process proves a persistent store.",
)
@json_option
@command
def doctor(nessie_config: Path | None, nessie_store: str | None, nessie_management: str | None, as_json: bool) -> int:
    """Connect to the configured catalog, engine and storage, and report what answers.

    \b
    Nessie: REST API v2, its release against the tested one, the main branch, its version store
      (a warning when it is IN_MEMORY or cannot be told); the warehouse's S3 bucket.
    Trino: /v1/info, started, its release against the tested one. Embedded: the catalog's folder.
    Exit 2 when a service does not answer or cannot be used, else 0; warnings are listed.
    """
    from cascade_ci.doctor import NessieServer, diagnose, read_server_config

    settings = _settings()
    config = read_server_config(nessie_config) if nessie_config else None
    report = diagnose(settings, NessieServer(config, nessie_store, nessie_management))
    click.echo(f"cascade doctor: {report.summary()}", err=True)
    _emit(report.to_dict(), as_json, report.text())
    return report.exit_code


def main() -> None:
    """Console-script entry point."""
    cli()
