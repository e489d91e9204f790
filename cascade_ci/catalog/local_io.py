"""A FileIO for the embedded warehouse that reads and writes table metadata with plain Python files.

pyiceberg's default FileIO for local paths is `PyArrowFileIO`, whose module loads pyarrow's dataset layer (and
with it pandas): about half a second of every process that only touches metadata, such as one that re-bases a
branch by appending its data files again. Here metadata (JSON and Avro files) goes through `open`, and data
files through `PyArrowFileIO`, loaded on first use, so reading and writing Parquet stays pyarrow's native path.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import unquote, urlparse

from pyiceberg.io import FileIO, InputFile, OutputFile

if TYPE_CHECKING:
    from pyiceberg.io import InputStream, OutputStream

DATA_SUFFIXES = (".parquet", ".orc", ".avro.data", ".puffin")  # what goes to pyarrow; the rest is metadata


def _path(location: str) -> Path:
    parsed = urlparse(location)
    return Path(unquote(parsed.path) if parsed.scheme == "file" else location)


class LocalInputFile(InputFile):
    def __len__(self) -> int:
        return _path(self.location).stat().st_size

    def exists(self) -> bool:
        return _path(self.location).exists()

    def open(self, seekable: bool = True) -> InputStream:
        stream: BinaryIO = _path(self.location).open("rb")  # FileNotFoundError, as PyArrowFileIO raises
        return stream  # type: ignore[return-value]  # a binary file is an InputStream


class LocalOutputFile(OutputFile):
    def __len__(self) -> int:
        return _path(self.location).stat().st_size

    def exists(self) -> bool:
        return _path(self.location).exists()

    def to_input_file(self) -> InputFile:
        return LocalInputFile(self.location)

    def create(self, overwrite: bool = False) -> OutputStream:
        path = _path(self.location)
        path.parent.mkdir(parents=True, exist_ok=True)
        stream: BinaryIO = path.open("wb" if overwrite else "xb")  # FileExistsError, as PyArrowFileIO raises
        return stream  # type: ignore[return-value]  # a binary file is an OutputStream


class LocalFileIO(FileIO):
    """Metadata through Python's `open`, data files through pyarrow (see the module's docstring)."""

    @cached_property
    def _data(self) -> FileIO:
        from pyiceberg.io.pyarrow import PyArrowFileIO

        return PyArrowFileIO(self.properties)

    @staticmethod
    def _is_data(location: str) -> bool:
        return location.endswith(DATA_SUFFIXES)

    def new_input(self, location: str) -> InputFile:
        return self._data.new_input(location) if self._is_data(location) else LocalInputFile(location)

    def new_output(self, location: str) -> OutputFile:
        return self._data.new_output(location) if self._is_data(location) else LocalOutputFile(location)

    def delete(self, location: str | InputFile | OutputFile) -> None:
        path = location if isinstance(location, str) else location.location
        if self._is_data(path):
            self._data.delete(path)
        else:
            os.remove(_path(path))
