"""20 concurrent pipeline runs, each in its own processes, all trying to promote: on both backends.

Every run: `cascade branch` -> a writer process appends the run's rows on its branch -> `cascade
validate --gates schema` -> `cascade promote`. Runs of wave k (5 per wave) hold back until k
promotions have landed, so later waves fork from a main that moved and several promotions land while
others race. Promotion is a compare-and-swap on main (on Nessie a strict `PUT /trees/main@<expected>`
after the record was staged on a `cascade-scratch/<time>-<uuid>` branch): each promotion lands whole or is
refused cleanly, main's history holds every landed promotion, main holds exactly the landed rows, main
stays one line (no merge commit on its first-parent history, every `prod-*` tag on it), the embedded
SQLite file stays sound and no Nessie scratch branch outlives its command.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pytest

from cascade_ci.catalog.base import RefKind
from cascade_ci.naming import TAG_PREFIX
from tests.faults.nessie_support import ids_at, scratch_branches
from tests.faults.support import Done, assert_catalog_sound, cascade, run_python
from tests.faults.write_rows import SCHEMA

RUNS = 20
ROWS_PER_RUN = 25
TABLE = "faults.readings"
WAVE = 5  # runs that start together; wave k starts once k promotions have landed


@dataclass
class RunOutcome:
    run_id: str
    first_id: int
    steps: dict[str, Done] = field(default_factory=dict)

    @property
    def branch(self) -> str:
        return f"pipeline/run-{self.run_id}"

    @property
    def ids(self) -> set[int]:
        return set(range(self.first_id, self.first_id + ROWS_PER_RUN))


@pytest.fixture(params=["local", "nessie"])
def backend(request, monkeypatch) -> str:
    if request.param == "nessie":
        request.getfixturevalue("nessie_backend")
    # No dbt: 20 dbt runs would not fit the time budget. CASCADE_GATES is also what promotion requires of a
    # verdict (no required_gates is set), so a verdict of `validate --gates schema` may be promoted.
    monkeypatch.setenv("CASCADE_GATES", "schema")
    return request.param


def open_store():
    from cascade_ci.catalog import open_catalog
    from cascade_ci.config import load_settings

    return open_catalog(load_settings())


class Landings:
    """Counts promotions that landed, so a wave of runs can start right after the previous wave's landing."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = threading.Condition()

    def landed(self) -> None:
        with self._changed:
            self.count += 1
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self.count >= count, timeout=timeout)


def one_run(index: int, landings: Landings, reports: Path) -> RunOutcome:
    run = RunOutcome(f"n{index:02d}", first_id=1000 * (index + 1))
    landings.wait_for(index // WAVE, timeout=300)  # a slow machine must not start two waves on one base
    run.steps["branch"] = cascade("branch", "--run-id", run.run_id, "--json")
    if run.steps["branch"].returncode != 0:
        return run
    run.steps["write"] = run_python(
        "-m", "tests.faults.write_rows", run.branch, TABLE, str(run.first_id), str(ROWS_PER_RUN)
    )
    if run.steps["write"].returncode != 0:
        return run
    run.steps["validate"] = cascade(
        "validate", "--run-id", run.run_id, "--gates", "schema", "--json", "--reports-dir", str(reports / run.run_id)
    )
    if run.steps["validate"].returncode != 0:
        return run
    run.steps["promote"] = cascade("promote", "--run-id", run.run_id, "--json")
    if run.steps["promote"].returncode == 0:
        landings.landed()
    return run


def test_twenty_concurrent_runs_promote_whole_or_not_at_all(backend, settings, tmp_path):
    with open_store() as catalog:
        main_tables = catalog.tables("main")
        main_tables.create_namespace("faults")
        main_tables.create_table(TABLE, SCHEMA).append(pa.table({"id": [0], "run": ["seed"]}, schema=SCHEMA))
        seed_head = catalog.get_ref("main").hash

    landings = Landings()
    with ThreadPoolExecutor(max_workers=RUNS) as pool:
        runs = list(pool.map(lambda i: one_run(i, landings, tmp_path / "reports"), range(RUNS)))

    landed, refused = [], []
    for run in runs:
        for step in ("branch", "write", "validate"):
            assert run.steps[step].returncode == 0, str(run.steps[step])
        promotion = run.steps["promote"]
        assert promotion.returncode in (0, 1), str(promotion)  # never 2: no crash, no infrastructure error
        payload = promotion.json()
        if promotion.returncode == 0:
            assert payload["action"] == "promoted", str(promotion)
            assert payload["tag"].startswith(TAG_PREFIX)
            landed.append((run, payload))
        else:
            assert payload["type"] == "RefusedError", str(promotion)
            assert "main" in payload["message"] and run.run_id in payload["message"], payload
            refused.append((run, payload))
    print(f"{len(landed)} of {RUNS} promotions landed on {backend}, {len(refused)} refused")
    assert len(landed) >= RUNS // WAVE, "every wave's first promotion to reach main must land"
    assert len(landed) + len(refused) == RUNS

    with open_store() as catalog:
        main = catalog.get_ref("main")
        assert catalog.is_ancestor(seed_head, main.hash)
        tags = {ref.name: ref for ref in catalog.list_refs(TAG_PREFIX)}
        assert len(tags) == len(landed), (sorted(tags), [r.run_id for r, _ in landed])
        first_parent = catalog.log(main.hash)
        main_history = {commit.hash for commit in first_parent}
        # Main stays one line: no merge commit on its first-parent history, and every prod-* tag on it.
        assert [commit.hash for commit in first_parent if len(commit.parents) > 1] == []
        assert sorted(name for name, ref in tags.items() if ref.hash not in main_history) == []
        for run, payload in landed:
            # Every landed promotion is in main's (first-parent) history, and its tag marks exactly what landed.
            assert payload["main_after"] in main_history, run.run_id
            assert catalog.is_ancestor(payload["main_after"], main.hash), run.run_id
            assert catalog.get_ref(run.branch).hash == payload["main_after"], run.run_id
            tag = tags[payload["tag"]]
            assert tag.kind is RefKind.TAG and tag.hash == payload["main_after"]
            # Right after it landed, main held every row of the run (and what main had before), once.
            at_tag = ids_at(catalog, tag.name, TABLE)
            assert run.ids <= set(at_tag), run.run_id
            assert len(at_tag) == len(set(at_tag)), f"duplicate rows at {tag.name}"
            assert set(ids_at(catalog, payload["main_before"], TABLE)) < set(at_tag)
        for run, _ in refused:
            head = catalog.get_ref(run.branch).hash
            assert head not in main_history and not catalog.is_ancestor(head, main.hash), run.run_id

        # No lost commit: main holds exactly the seed row plus the rows of the runs that landed.
        expected = {0}.union(*(run.ids for run, _ in landed))
        assert ids_at(catalog, "main", TABLE) == sorted(expected)
        # The landed promotions form one line of history, each tag an ancestor of the next, the last at main.
        ordered = sorted((tags[p["tag"]].hash for _, p in landed), key=lambda h: len(catalog.log(h)))
        for older, newer in itertools.pairwise(ordered):
            assert catalog.is_ancestor(older, newer)
        assert ordered[-1] == main.hash
        if backend == "nessie":  # every command dropped the scratch branches it staged its writes on
            assert scratch_branches(catalog) == {}
    if backend == "local":
        assert_catalog_sound(settings.home)
