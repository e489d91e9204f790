"""The main job: branch, ingest, transform, validate, and promote when the verdict passes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from cascade_ci.errors import MergeConflictError, RefusedError

if TYPE_CHECKING:
    from cascade_ci.catalog.base import BranchCatalog
    from cascade_ci.config import Settings
    from cascade_ci.verdict import Verdict


@dataclass
class RunResult:
    run_id: str
    branch: str = ""
    outcome: str = "started"  # promoted | passed | blocked | refused
    verdict: Verdict | None = None
    tag: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "branch": self.branch,
            "outcome": self.outcome,
            "tag": self.tag,
            "stage_seconds": self.stages,
            "verdict": self.verdict.to_dict() if self.verdict else None,
            **self.details,
        }


def run_pipeline(
    settings: Settings,
    catalog: BranchCatalog,
    run_id: str,
    *,
    sources: Iterable[str] = (),
    options: Mapping[str, Any] | None = None,
    annotations: TextIO,
    say: Callable[[str], None] = lambda line: None,
    run_url: str | None = None,
    provenance: dict[str, str] | None = None,
    allow_empty: bool = False,
) -> RunResult:
    """Run every stage in order on run `run_id`'s branch; `say` receives one progress line per stage.

    A project without a `[transform]` skips the transform stage. An ingest that lands nothing stops the run
    (RefusedError) unless `allow_empty`. When main moved during the run, the promote stage brings the branch
    up to date, judges it again and promotes it (`promote --update`); the reports are written again for the
    new verdict.
    """
    from cascade_ci.stages.branch import create_run_branch
    from cascade_ci.stages.ingest import ingest, ingested_line
    from cascade_ci.stages.promote import promote
    from cascade_ci.stages.transform import transform
    from cascade_ci.stages.validate import publish, validate

    result = RunResult(run_id)

    def stage(number: int, total: int, name: str, work: Callable[[], str]) -> None:
        started = time.perf_counter()
        line = work()
        result.stages[name] = round(time.perf_counter() - started, 3)
        say(f"[{number}/{total}] {name:<9} {line} ({result.stages[name]:.1f} s)")

    def do_branch() -> str:
        made = create_run_branch(settings, catalog, run_id)
        result.branch = made.branch
        return f"{made.action} {made.branch} from {settings.main_branch} at {made.base_hash[:12]}"

    def do_ingest() -> str:
        written = ingest(settings, catalog, run_id, sources=sources, options=options)
        result.details["rows_ingested"] = written.rows
        result.details["rows_rejected"] = written.rejected
        return ingested_line(written)

    def do_transform() -> str:
        built = transform(settings, catalog, run_id, allow_empty=allow_empty)
        result.details["dbt_tests"] = built.tests
        tests = ", ".join(f"{count} {status}" for status, count in sorted(built.tests.items()))
        return f"{len(built.rows)} tables built; dbt tests: {tests or 'none'}"

    def do_validate() -> str:
        verdict = validate(settings, catalog, run_id, run_url=run_url, allow_empty=allow_empty)
        paths = publish(verdict, settings.path(settings.reports_dir), annotations)
        result.verdict = verdict
        result.details["reports"] = {key: str(path) for key, path in paths.items()}
        return f"{verdict.outcome}: {verdict.errors} errors, {verdict.warnings} warnings, {verdict.check_count} checks"

    def do_promote() -> str:
        assert result.verdict is not None
        if result.verdict.blocked:
            result.outcome = "blocked"
            return f"skipped: the verdict blocks; {settings.main_branch} unchanged"
        if not settings.auto_promote_enabled:
            result.outcome = "passed"
            return "skipped: AUTO_PROMOTE_ENABLED is false; promote with `cascade promote`"

        def judged_again(verdict: Verdict) -> None:  # main moved during the run: the updated head's verdict
            result.verdict = verdict
            publish(verdict, settings.path(settings.reports_dir), annotations)

        try:
            promoted = promote(
                settings,
                catalog,
                run_id,
                provenance=provenance,
                update=True,
                run_url=run_url,
                report=judged_again,
                allow_empty=allow_empty,
            )
        except (RefusedError, MergeConflictError) as e:
            result.outcome = "blocked" if result.verdict.blocked else "refused"
            return f"{result.outcome}: {e}"
        result.outcome, result.tag = "promoted", promoted.tag
        result.details["updates"] = promoted.updates
        moved = f" after {promoted.updates} update(s) onto a moved {settings.main_branch}" if promoted.updates else ""
        return f"{settings.main_branch} -> {promoted.main_after[:12]}, tagged {promoted.tag}{moved}"

    stages = [("branch", do_branch), ("ingest", do_ingest), ("transform", do_transform),
              ("validate", do_validate), ("promote", do_promote)]  # fmt: skip
    if settings.transform is None:
        stages.remove(("transform", do_transform))
    for number, (name, work) in enumerate(stages, start=1):
        stage(number, len(stages), name, work)
    return result
