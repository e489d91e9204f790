"""Nessie, Trino or S3 do not answer (or answer 503, or hang): bounded retries, then exit 2 naming the service.

The Nessie-backend counterpart of test_service_unavailable.py. The shared stack is never stopped: a service
is made unavailable to one command by pointing it elsewhere (`tests.fakes.http.unused_port()`: connection
refused), at a fake answering 503 (`tests.fakes.http.FakeServer`), or through a proxy in front of the real
service that fails, hangs or rewrites what it answers (tests/faults/http_proxy.py). After every outage the
run's branch is still there for inspection, main did not move, and the same command works again.

Retry policy measured here (cascade_ci/catalog/nessie.py `_call`): 3 retries with 0.5/1/2 s backoff for a
refused connection (any method) and for GET timeouts and 502/503/504, so a dead Nessie is reported after
~3.5 s; a hanging Nessie after 4 x the 30 s socket timeout + 3.5 s (~2 min, not configurable; shortened here).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from cascade_ci.catalog.nessie import NessieBranchCatalog
from cascade_ci.cli import cli
from tests.fakes.http import FakeServer, Request, unused_port
from tests.faults.http_proxy import HttpProxy
from tests.faults.nessie_support import open_nessie, scratch_branches

RETRY_SLEEPS = 0.5 + 1 + 2  # NessieBranchCatalog's backoff before giving up on a call: retries do happen
NESSIE_GIVES_UP_WITHIN = 10.0  # seconds from the command's start to exit 2 (refused / 503)
RUN = "31"
BRANCH = f"pipeline/run-{RUN}"


@contextmanager
def nessie_at(monkeypatch, uri: str) -> Iterator[str]:
    """Commands inside the block talk to `uri` instead of the real Nessie; checks after it see the real one."""
    real = os.environ["NESSIE_URI"]
    monkeypatch.setenv("NESSIE_URI", uri)
    try:
        yield uri
    finally:
        monkeypatch.setenv("NESSIE_URI", real)


def cascade(*args: str):
    started = time.perf_counter()
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    return result, time.perf_counter() - started


def payload_of(result) -> dict:
    return json.loads(result.stdout)


@pytest.fixture(autouse=True)
def nessie(nessie_backend, monkeypatch):
    monkeypatch.setenv("CASCADE_GATES", "schema")
    return nessie_backend


@pytest.fixture
def validated(nessie):
    """Run 31 is branched, written and validated on the real Nessie: ready to promote."""
    assert cascade("branch", "--run-id", RUN)[0].exit_code == 0
    import pyarrow as pa

    with open_nessie() as catalog:
        tables = catalog.tables(BRANCH)
        tables.create_namespace("raw")
        tables.create_table("raw.readings", pa.schema([pa.field("id", pa.int64())])).append(
            pa.table({"id": pa.array([1, 2], pa.int64())})
        )
    result, _ = cascade("validate", "--run-id", RUN)
    assert result.exit_code == 0, result.output
    with open_nessie() as catalog:
        return {"main": catalog.get_ref("main").hash, "branch": catalog.get_ref(BRANCH).hash}


def assert_untouched(before: dict[str, str], scratch_left: int = 0) -> None:
    """main did not move, the run's branch is still there at the same head, nothing else appeared (but at most
    `scratch_left` scratch branches holding only main's or the branch's tables, which gc sweeps once stale)."""
    with open_nessie() as catalog:
        assert catalog.get_ref("main").hash == before["main"]
        assert catalog.get_ref(BRANCH).hash == before["branch"], "the run's branch must be kept as it was"
        assert [ref.name for ref in catalog.list_refs("pipeline/")] == [BRANCH]
        left = scratch_branches(catalog)
        assert len(left) <= scratch_left, left
        for head in left.values():
            assert catalog.diff(before["branch"], head) == []


def assert_unavailable(result, elapsed: float, must_name: tuple[str, ...], within: float) -> dict:
    assert result.exit_code == 2, result.output
    payload = payload_of(result)
    assert payload["type"] == "ServiceUnavailableError", payload
    for word in must_name:
        assert word in payload["message"], payload
    assert elapsed < within, f"gave up only after {elapsed:.1f} s"
    return payload


COMMANDS = [("branch", "--run-id", "32"), ("validate", "--run-id", RUN), ("promote", "--run-id", RUN)]


class _Always(dict):
    """FakeServer routes that send every request to one handler."""

    def __init__(self, handler) -> None:
        super().__init__()
        self.handler = handler

    def get(self, key, default=None):
        return self.handler


def answer_503(_req: Request):
    return 503, {}, {"message": "Service Unavailable"}


# -- Nessie -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_nessie_refusing_connections_is_exit_2_naming_nessie(validated, monkeypatch, command):
    with nessie_at(monkeypatch, f"http://127.0.0.1:{unused_port()}") as dead:
        result, elapsed = cascade(*command)
    payload = assert_unavailable(result, elapsed, ("Nessie", dead), NESSIE_GIVES_UP_WITHIN)
    assert "refused" in payload["message"].lower(), payload
    assert elapsed >= RETRY_SLEEPS, f"no retries: gave up after {elapsed:.1f} s"
    assert_untouched(validated)
    again, _ = cascade(*command)  # Nessie is back: the same command runs
    assert again.exit_code == 0, again.output


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_nessie_answering_503_is_exit_2_naming_nessie(validated, monkeypatch, command):
    with FakeServer(routes=_Always(answer_503)) as fake, nessie_at(monkeypatch, fake.url) as uri:
        result, elapsed = cascade(*command)
    payload = assert_unavailable(result, elapsed, ("Nessie", uri, "503"), NESSIE_GIVES_UP_WITHIN)
    # Bounded retries: the first call (a GET) was tried 1 + 3 times, then the command gave up.
    assert len(fake.requests) == 4, [(r.method, r.path) for r in fake.requests]
    assert {r.method for r in fake.requests} == {"GET"}
    assert len({r.target for r in fake.requests}) == 1
    assert payload["message"].count("HTTP 503") == 1
    assert_untouched(validated)


def test_a_short_nessie_blip_is_retried_and_the_promotion_lands(validated, monkeypatch):
    with HttpProxy(open_nessie().uri) as proxy, nessie_at(monkeypatch, proxy.url):
        proxy.fail(503, times=2)  # the first GET is answered 503 twice, then Nessie is back
        result, elapsed = cascade("promote", "--run-id", RUN)
    assert result.exit_code == 0, result.output
    assert payload_of(result)["action"] == "promoted"
    assert [action for _, _, action in proxy.requests[:3]] == ["fail", "fail", "forward"]
    assert 0.5 + 1 <= elapsed < NESSIE_GIVES_UP_WITHIN


@pytest.fixture
def short_nessie_timeout(monkeypatch):
    """NessieBranchCatalog waits TIMEOUT_S for an answer instead of 30 s (this process only)."""
    original = NessieBranchCatalog.from_settings.__func__

    def with_short_timeout(cls, settings):
        catalog = original(cls, settings)
        catalog._timeout = HANG_TIMEOUT_S
        return catalog

    monkeypatch.setattr(NessieBranchCatalog, "from_settings", classmethod(with_short_timeout))


HANG_TIMEOUT_S = 0.5


@pytest.mark.parametrize("command", [COMMANDS[0], COMMANDS[2]], ids=lambda c: c[0])
def test_nessie_that_never_answers_is_exit_2_naming_nessie(validated, monkeypatch, short_nessie_timeout, command):
    with HttpProxy(open_nessie().uri) as proxy, nessie_at(monkeypatch, proxy.url) as uri:
        proxy.hang()
        result, elapsed = cascade(*command)
    # 4 attempts of HANG_TIMEOUT_S each plus the backoff: with the real 30 s timeout that is ~124 s.
    payload = assert_unavailable(result, elapsed, ("Nessie", uri), 4 * HANG_TIMEOUT_S + RETRY_SLEEPS + 4)
    assert "timed out" in payload["message"], payload
    assert len(proxy.requests) == 4
    assert_untouched(validated)


def test_nessie_lost_mid_promotion_then_rerun_lands(validated, monkeypatch):
    """Nessie starts failing after promote read the branch, at its first write: exit 2, main untouched."""
    original = NessieBranchCatalog.commit_meta
    with HttpProxy(open_nessie().uri) as proxy, nessie_at(monkeypatch, proxy.url) as uri:

        def commit_meta_during_outage(self, *args, **kwargs):
            proxy.fail(503)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(NessieBranchCatalog, "commit_meta", commit_meta_during_outage)
        result, elapsed = cascade("promote", "--run-id", RUN)
        assert_unavailable(result, elapsed, ("Nessie", uri, "503"), NESSIE_GIVES_UP_WITHIN)
        monkeypatch.setattr(NessieBranchCatalog, "commit_meta", original)
        proxy.forward()
        assert_untouched(validated, scratch_left=1)  # the scratch branch the promotion record was staged on
        rerun, _ = cascade("promote", "--run-id", RUN)
    assert rerun.exit_code == 0 and payload_of(rerun)["action"] == "promoted", rerun.output
    with open_nessie() as catalog:
        assert catalog.get_ref("main").hash == payload_of(rerun)["main_after"]
        # the outage stopped promote from dropping the scratch branch its record was staged on (it holds no data
        # of its own); gc sweeps it once stale (catalog.sweep_leftovers)
        left = scratch_branches(catalog)
        assert len(left) <= 1
        for head in left.values():  # the same tables as main: nothing of its own
            assert catalog.diff(catalog.get_ref("main").hash, head) == []


# -- Trino --------------------------------------------------------------------------------------------


@pytest.fixture
def ingested(nessie, glucose_project):
    """Run 41 of the glucose + GitHub example is branched and holds one window of its sample raw data: ready to
    transform (with dbt-trino, as the example's cascade.toml declares)."""
    assert cascade("branch", "--run-id", "41")[0].exit_code == 0
    result, _ = cascade("ingest", "--run-id", "41")
    assert result.exit_code == 0, result.output
    with open_nessie() as catalog:
        return {
            "main": catalog.get_ref("main").hash,
            "head": catalog.get_ref("pipeline/run-41").hash,
            "rows": payload_of(result)["rows"],
        }


@contextmanager
def trino_unavailable(how: str, monkeypatch) -> Iterator[str]:
    """TRINO_URI at a closed port (refused) or at a fake answering 503 to everything; yields the URI."""
    if how == "refused":
        uri = f"http://127.0.0.1:{unused_port()}"
        monkeypatch.setenv("TRINO_URI", uri)
        yield uri
        return
    with FakeServer(routes=_Always(answer_503)) as fake:
        monkeypatch.setenv("TRINO_URI", fake.url)
        yield fake.url


TRINO_GIVES_UP_WITHIN = 15.0  # measured ~1 s: the trino client retries 3 times with a short backoff


def assert_branch_kept_with_raw_data(ingested) -> None:
    with open_nessie() as catalog:
        assert catalog.get_ref("main").hash == ingested["main"]
        assert catalog.get_ref("pipeline/run-41").hash == ingested["head"], "the branch moved"
        tables = catalog.tables("pipeline/run-41")
        for table, count in ingested["rows"].items():
            assert tables.load_table(table).scan().to_arrow().num_rows == count, table
        assert not tables.table_exists("marts.fct_glucose_readings")
        assert scratch_branches(catalog) == {}


@pytest.mark.parametrize("how", ["refused", "503"])
def test_trino_unavailable_is_exit_2_and_keeps_the_branch(ingested, monkeypatch, how):
    with trino_unavailable(how, monkeypatch):
        result, elapsed = cascade("transform", "--run-id", "41")
    assert result.exit_code == 2, result.output
    assert elapsed < TRINO_GIVES_UP_WITHIN, f"gave up only after {elapsed:.1f} s"
    assert_branch_kept_with_raw_data(ingested)


@pytest.mark.parametrize("how", ["refused", "503"])
def test_trino_unavailable_is_named(ingested, monkeypatch, how):
    with trino_unavailable(how, monkeypatch) as uri:
        result, elapsed = cascade("transform", "--run-id", "41")
    assert_unavailable(result, elapsed, ("Trino", uri), TRINO_GIVES_UP_WITHIN)


# -- S3 -----------------------------------------------------------------------------------------------


@pytest.fixture
def branched(nessie, glucose_project):
    """Run 51 of the glucose + GitHub example is branched: `cascade ingest` reads the example's sample source."""
    assert cascade("branch", "--run-id", "51")[0].exit_code == 0
    with open_nessie() as catalog:
        return {"main": catalog.get_ref("main").hash, "head": catalog.get_ref("pipeline/run-51").hash}


S3_GIVES_UP_WITHIN = 15.0  # measured ~2 s: pyarrow gives up on a refused S3 connection at once


def assert_ingest_left_nothing(branched) -> None:
    """Exit 2 undid the partial ingest: the branch is kept, and holds what it held before."""
    with open_nessie() as catalog:
        assert catalog.get_ref("main").hash == branched["main"]
        head = catalog.get_ref("pipeline/run-51").hash
        assert catalog.diff(branched["head"], head) == [], "a partial ingest stayed on the branch"
        assert scratch_branches(catalog) == {}


@contextmanager
def s3_advertised_dead(monkeypatch) -> Iterator[str]:
    """A proxy in front of Nessie advertises a closed port as `s3.endpoint` (config overrides, table config).

    Yields the dead endpoint, host:port.
    """
    real = urlsplit(open_nessie().s3_options["s3.endpoint"])
    dead = f"127.0.0.1:{unused_port()}"
    with HttpProxy(open_nessie().uri) as proxy, nessie_at(monkeypatch, proxy.url):
        proxy.rewrite = {f"{real.hostname}:{real.port}".encode(): dead.encode()}
        yield dead


def test_advertised_s3_unreachable_ingest_is_exit_2_naming_s3_and_undone(branched, monkeypatch):
    with s3_advertised_dead(monkeypatch) as dead:
        monkeypatch.delenv("S3_ENDPOINT")  # the client goes where Nessie says S3 is
        result, elapsed = cascade("ingest", "--run-id", "51")
    assert_unavailable(result, elapsed, ("S3", dead), S3_GIVES_UP_WITHIN)
    assert_ingest_left_nothing(branched)


def test_s3_endpoint_unreachable_ingest_is_exit_2_naming_s3_and_undone(branched, monkeypatch):
    dead = f"http://127.0.0.1:{unused_port()}"
    monkeypatch.setenv("S3_ENDPOINT", dead)
    result, elapsed = cascade("ingest", "--run-id", "51")
    assert_unavailable(result, elapsed, ("S3", dead), S3_GIVES_UP_WITHIN)
    assert_ingest_left_nothing(branched)


def test_s3_endpoint_wins_over_the_one_nessie_advertises(branched, monkeypatch):
    """A Nessie in a container may advertise an endpoint only its own network reaches."""
    with s3_advertised_dead(monkeypatch):
        result, _ = cascade("ingest", "--run-id", "51")
    assert result.exit_code == 0, result.output
