"""cascade_ci.naming: every name that reaches a catalog, engine or shell is validated here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cascade_ci import naming
from cascade_ci.errors import ConfigError, InvalidNameError
from cascade_ci.naming import (
    DEFAULT_BRANCH_PREFIX,
    branch_name,
    local_run_id,
    promotion_tag,
    run_id_of,
    validate_attempt,
    validate_prefix,
    validate_ref_name,
    validate_run_id,
)

# --- run ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "run_id",
    [
        "1",
        "a",
        "Z",
        "12345678901",
        "local-20240101000000000000",
        "run_1-b",
        "a-",
        "9_",
        "x" * 64,
        "A" + "-" * 63,
    ],
)
def test_valid_run_ids_are_returned_unchanged(run_id: str) -> None:
    assert validate_run_id(run_id) == run_id


@pytest.mark.parametrize(
    "run_id",
    [
        "",
        "x" * 65,
        "1" * 65,
        "-1",
        "_1",
        "1;rm -rf /",
        "$(id)",
        "`id`",
        "1`id`",
        "1\n",
        "1\nrm",
        "\n1",
        "a b",
        " 1",
        "1 ",
        "1\t",
        "../x",
        "a/b",
        "a.b",
        "1&&id",
        "1|id",
        "1>x",
        "a'b",
        'a"b',
        "a\\b",
        "a\x00b",
        "ü1",
        "1ü",
        "\u0661\u0662",  # Arabic-Indic digits: \d would accept them, the rule must not
    ],
)
def test_invalid_run_ids_raise_invalid_name_error(run_id: str) -> None:
    with pytest.raises(InvalidNameError) as excinfo:
        validate_run_id(run_id)
    assert repr(run_id) in str(excinfo.value)


def test_invalid_name_error_is_a_config_error_with_exit_code_2() -> None:
    with pytest.raises(ConfigError) as excinfo:
        validate_run_id("$(id)")
    assert excinfo.value.exit_code == 2


@pytest.mark.parametrize("attempt", [1, 2, 50])
def test_positive_attempts_are_valid(attempt: int) -> None:
    assert validate_attempt(attempt) == attempt


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_count_from_one(attempt: int) -> None:
    with pytest.raises(InvalidNameError):
        validate_attempt(attempt)


# --- ref names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "main",
        "m",
        "pipeline/run-123",
        "release/v1.2",
        "prod-20240101-000000",
        "prod-20240101-000000-2",
        "a.b_c-d/e",
        "feature/x_",
        "feature/x-",
        "a" * 100,
    ],
)
def test_valid_ref_names(name: str) -> None:
    assert validate_ref_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a..b",
        "..",
        "a/../b",
        "a//b",
        "a/",
        "a.",
        "main/",
        "main.",
        "1main",
        "0",
        "-main",
        "_main",
        ".main",
        "/main",
        "main@{1}",
        "a@b",
        "a b",
        "a:b",
        "a~1",
        "a^",
        "a*",
        "a?",
        "a[b",
        "a\\b",
        "a\nb",
        "main\n",
        "$(id)",
        "a" * 101,
    ],
)
def test_invalid_ref_names(name: str) -> None:
    with pytest.raises(InvalidNameError) as excinfo:
        validate_ref_name(name)
    assert repr(name) in str(excinfo.value)


@pytest.mark.parametrize("prefix", ["pipeline/run-", "p", "ci/", "wap.", "a_b-c/"])
def test_valid_prefixes(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "../x", "a..b", "a//b", "1run-", "-run", "/run", "run run-", "run;", "p" * 64])
def test_invalid_prefixes(prefix: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_prefix(prefix)


# --- branch names ------------------------------------------------------------------------------


def test_branch_name_uses_the_default_prefix() -> None:
    assert DEFAULT_BRANCH_PREFIX == "pipeline/run-"
    assert branch_name("12345") == "pipeline/run-12345"


def test_branch_name_with_custom_prefix() -> None:
    assert branch_name("42", prefix="wap/") == "wap/42"


@pytest.mark.parametrize("run_id", ["", "$(id)", "1;rm -rf /", "../x", "a b", "x" * 65, "-1"])
def test_branch_name_refuses_bad_run_ids(run_id: str) -> None:
    with pytest.raises(InvalidNameError):
        branch_name(run_id)


@pytest.mark.parametrize("prefix", ["../x", "a//", "1/", ""])
def test_branch_name_refuses_bad_prefixes(prefix: str) -> None:
    with pytest.raises(InvalidNameError):
        branch_name("1", prefix=prefix)


def test_branch_name_refuses_a_result_longer_than_a_ref_name_may_be() -> None:
    prefix = "p" * 63  # the longest valid prefix
    assert validate_prefix(prefix) == prefix
    with pytest.raises(InvalidNameError):
        branch_name("1" * 64, prefix=prefix)  # 127 characters: over the 100-character ref-name limit


@pytest.mark.parametrize("run_id", ["1", "12345678901", "local-20240101000000123456", "a_b-c", "x" * 64])
@pytest.mark.parametrize("prefix", [DEFAULT_BRANCH_PREFIX, "wap/", "ci.run_"])
def test_run_id_of_inverts_branch_name(run_id: str, prefix: str) -> None:
    branch = branch_name(run_id, prefix=prefix)
    assert run_id_of(branch, prefix=prefix) == run_id


def test_run_id_of_default_prefix() -> None:
    assert run_id_of("pipeline/run-987") == "987"


@pytest.mark.parametrize(
    "branch",
    [
        "main",
        "pipeline/run-",  # no run id at all
        "pipeline/run-a/b",  # not a run id
        "pipeline/run--1",  # run ids start alphanumeric
        "pipeline/run-" + "x" * 65,
        "other/run-1",
        "pipeline/run1",
        "prod-20240101-000000",
    ],
)
def test_run_id_of_non_pipeline_branches_is_none(branch: str) -> None:
    assert run_id_of(branch) is None


def test_run_id_of_respects_the_prefix_given() -> None:
    assert run_id_of("pipeline/run-1", prefix="wap/") is None
    assert run_id_of("wap/1", prefix="wap/") == "1"


# --- promotion tags ----------------------------------------------------------------------------


def test_promotion_tag_is_in_utc_for_a_non_utc_time() -> None:
    # 01:02:03 at UTC+05:30 on 1 March 2024 is 19:32:03 UTC on 29 February (a leap day).
    now = datetime(2024, 3, 1, 1, 2, 3, 999_999, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert promotion_tag(now, lambda _name: False) == "prod-20240229-193203"


def test_promotion_tag_for_a_negative_offset_crosses_to_the_next_day() -> None:
    now = datetime(2023, 12, 31, 22, 0, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert promotion_tag(now, lambda _name: False) == "prod-20240101-030000"


def test_promotion_tag_for_utc_time() -> None:
    now = datetime(2024, 7, 9, 8, 7, 6, tzinfo=UTC)
    tag = promotion_tag(now, lambda _name: False)
    assert tag == "prod-20240709-080706"
    assert validate_ref_name(tag) == tag


def test_promotion_tag_appends_suffixes_while_taken() -> None:
    now = datetime(2024, 7, 9, 8, 7, 6, tzinfo=UTC)
    taken = {"prod-20240709-080706"}
    asked: list[str] = []

    def exists(name: str) -> bool:
        asked.append(name)
        return name in taken

    assert promotion_tag(now, exists) == "prod-20240709-080706-2"
    assert asked == ["prod-20240709-080706", "prod-20240709-080706-2"]

    asked.clear()
    taken.add("prod-20240709-080706-2")
    assert promotion_tag(now, exists) == "prod-20240709-080706-3"
    assert asked == ["prod-20240709-080706", "prod-20240709-080706-2", "prod-20240709-080706-3"]


def test_promotion_tag_skips_every_taken_suffix() -> None:
    now = datetime(2024, 7, 9, 8, 7, 6, tzinfo=UTC)
    base = "prod-20240709-080706"
    taken = {base} | {f"{base}-{n}" for n in range(2, 11)}
    tag = promotion_tag(now, taken.__contains__)
    assert tag == f"{base}-11"
    assert validate_ref_name(tag) == tag


def test_promotion_tag_prefix_constant() -> None:
    assert naming.TAG_PREFIX == "prod-"


# --- local run ids -----------------------------------------------------------------------------


def test_local_run_id_format_in_utc() -> None:
    now = datetime(2024, 3, 1, 1, 2, 3, 45, tzinfo=timezone(timedelta(hours=2)))
    assert local_run_id(now) == "local-20240229230203000045"


def test_local_run_id_satisfies_the_run_id_rule_and_makes_a_valid_branch() -> None:
    run_id = local_run_id(datetime(2024, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
    assert run_id == "local-20241231235959999999"
    assert validate_run_id(run_id) == run_id
    assert len(run_id) <= 64
    assert run_id_of(branch_name(run_id)) == run_id


def test_local_run_ids_differ_by_microsecond() -> None:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    assert local_run_id(t) != local_run_id(t + timedelta(microseconds=1))
