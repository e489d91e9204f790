"""The upsert tests of tests/unit/test_upsert.py on Nessie + S3 (moto): the same tests, on the real stack.

Every test gets Nessie emptied to a fresh `main` (`nessie_backend`), and opens the catalog the project's
settings name (`CASCADE_CATALOG=nessie`): tables on `main`, their data files in S3.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cascade_ci.catalog import open_catalog
from cascade_ci.catalog.base import BranchCatalog
from cascade_ci.config import load_settings
from tests.unit import test_upsert as embedded

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("nessie_backend")]


@pytest.fixture
def catalog(nessie_backend) -> Iterator[BranchCatalog]:
    with open_catalog(load_settings()) as nessie:
        yield nessie


@pytest.fixture
def tables(catalog):
    return catalog.tables("main")


test_replaced_rows_are_replaced_and_new_rows_added = embedded.test_replaced_rows_are_replaced_and_new_rows_added
test_no_existing_key_is_a_plain_append = embedded.test_no_existing_key_is_a_plain_append
test_compound_keys_replace_only_the_same_combination = embedded.test_compound_keys_replace_only_the_same_combination
test_keys_spread_over_many_files_in_no_particular_order = (
    embedded.test_keys_spread_over_many_files_in_no_particular_order
)
test_keys_interleaved_with_the_old_ones_replace_only_their_own = (
    embedded.test_keys_interleaved_with_the_old_ones_replace_only_their_own
)
test_time_ordered_keys_read_and_rewrite_only_the_newest_file = (
    embedded.test_time_ordered_keys_read_and_rewrite_only_the_newest_file
)
test_null_keys_are_always_appended_and_never_replace = embedded.test_null_keys_are_always_appended_and_never_replace
test_a_key_repeated_within_one_input_is_kept_as_it_comes = (
    embedded.test_a_key_repeated_within_one_input_is_kept_as_it_comes
)
test_the_same_upsert_twice_leaves_the_same_rows = embedded.test_the_same_upsert_twice_leaves_the_same_rows
test_a_renamed_and_widened_key_column_is_followed = embedded.test_a_renamed_and_widened_key_column_is_followed
test_the_copy_of_a_file_keeps_every_column_as_it_was = embedded.test_the_copy_of_a_file_keeps_every_column_as_it_was
test_an_upsert_is_all_or_nothing = embedded.test_an_upsert_is_all_or_nothing
test_a_stream_is_written_in_chunks_as_one_upsert = embedded.test_a_stream_is_written_in_chunks_as_one_upsert
test_a_reader_is_appended_in_chunks = embedded.test_a_reader_is_appended_in_chunks
test_a_stream_failing_midway_leaves_the_branch_unchanged = (
    embedded.test_a_stream_failing_midway_leaves_the_branch_unchanged
)


def test_the_tables_live_in_s3(tables):
    embedded.upsert(tables, embedded.TABLE, embedded.items(["a", "b"], 1), ("k",))
    embedded.upsert(tables, embedded.TABLE, embedded.items(["b", "c"], 2), ("k",))
    assert all(path.startswith("s3://") for path in embedded.files_of(tables))
    assert embedded.content(tables) == [("a", 1), ("b", 2), ("c", 2)]
