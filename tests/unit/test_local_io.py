"""The embedded warehouse's FileIO: metadata through Python files, data files through pyarrow."""

from __future__ import annotations

import pytest

from cascade_ci.catalog.local_io import LocalFileIO, LocalInputFile


def test_metadata_files_are_python_files_and_data_files_go_to_pyarrow(tmp_path):
    io = LocalFileIO()
    location = (tmp_path / "meta" / "v1.metadata.json").as_uri()
    with io.new_output(location).create() as stream:
        stream.write(b"{}")
    with pytest.raises(FileExistsError):  # as PyArrowFileIO: no silent overwrite
        io.new_output(location).create()
    with io.new_output(location).create(overwrite=True) as stream:
        stream.write(b'{"a": 1}')
    found = io.new_input(location)
    assert isinstance(found, LocalInputFile) and found.exists() and len(found) == 8
    with found.open() as stream:
        stream.seek(2)
        assert stream.read() == b'a": 1}'
    io.delete(location)
    assert not io.new_input(location).exists()
    with pytest.raises(FileNotFoundError):
        io.new_input(location).open()

    data = str(tmp_path / "data" / "part-0.parquet")
    assert type(io.new_output(data)).__name__ == "PyArrowFile"  # pyarrow's native path for data
