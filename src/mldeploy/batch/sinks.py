"""Output files, written atomically: rows go to a temporary file that replaces the output only
when the whole run succeeded (a rename next to a local output; one upload of the finished file
for a remote one). A failed run leaves no output and no temporary file."""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.fs as pafs

from ..errors import UsageError
from .options import Format
from .sources import filesystem


class AtomicFile:
    """A file that appears at ``uri`` only on :meth:`commit`."""

    def __init__(self, uri: str, *, overwrite: bool) -> None:
        self.uri = uri
        self.fs, self.path = filesystem(uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.Directory:
            raise UsageError(f"output {uri!r} is a directory", hint="give a file name")
        self.exists = info.type == pafs.FileType.File
        if self.exists and not overwrite:
            raise UsageError(f"output {uri!r} exists", hint="pass --overwrite to replace it")
        if self.local:
            parent = os.path.dirname(self.path) or "."
            if not os.path.isdir(parent):
                raise UsageError(f"the output's directory {parent!r} does not exist")
            name = f".{os.path.basename(self.path)}.mldeploy-{uuid.uuid4().hex[:12]}.tmp"
            self.temp = os.path.join(parent, name)
        else:
            fd, self.temp = tempfile.mkstemp(prefix="mldeploy-batch-", suffix=".tmp")
            os.close(fd)

    def commit(self) -> None:
        if self.local:
            os.replace(self.temp, self.path)
            return
        try:
            pafs.copy_files(self.temp, self.path, source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=self.fs)
        finally:
            self.discard()

    def discard(self) -> None:
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass

    def remove_existing(self) -> None:
        """Delete the file at ``uri`` (a stale side file of an earlier run)."""
        if self.exists:
            self.fs.delete_file(self.path)


class TableWriter:
    """Writes Arrow tables to one file of ``fmt``; the first table fixes the schema and every
    later one is cast to it (safely: a value that does not fit is an error, never truncated)."""

    def __init__(self, path: str, fmt: Format) -> None:
        self.path, self.format = path, fmt
        self.schema: pa.Schema | None = None
        self._writer: Any = None
        self._file: Any = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self.schema is None:
            self._open(table.schema)
        elif table.schema != self.schema:
            table = table.cast(self.schema, safe=True)
        if self.format is Format.JSONL:
            for record in table.to_pylist():
                self._file.write(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY,
                                              default=str))
                self._file.write(b"\n")
        else:
            self._writer.write_table(table)
        self.rows += table.num_rows

    def _open(self, schema: pa.Schema) -> None:
        self.schema = schema
        if self.format is Format.PARQUET:
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self.path, schema)
        elif self.format is Format.CSV:
            import pyarrow.csv as pacsv

            self._writer = pacsv.CSVWriter(self.path, schema)
        else:
            self._file = open(self.path, "wb", buffering=1 << 20)  # noqa: SIM115

    def close(self, empty_schema: pa.Schema | None = None) -> None:
        """Finish the file; with no table written, an empty file of ``empty_schema``."""
        if self.schema is None and empty_schema is not None:
            self._open(empty_schema)
        for handle in (self._writer, self._file):
            if handle is not None:
                handle.close()
        self._writer = self._file = None
        if self.schema is None and not os.path.exists(self.path):
            open(self.path, "wb").close()


class SkippedRows:
    """The side file of rows ``--on-error skip`` left out: one JSON object a line with the
    file, row, error code and message (the protocol's) and the row's values."""

    def __init__(self, uri: str, *, overwrite: bool) -> None:
        self.target = AtomicFile(uri, overwrite=overwrite)
        self.count = 0
        self._file: Any = None

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self._file is None:
            self._file = open(self.target.temp, "wb")  # noqa: SIM115
        for record in records:
            self._file.write(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY,
                                          default=str))
            self._file.write(b"\n")
        self.count += len(records)

    def finish(self, ok: bool) -> str | None:
        """Commit (when ``ok`` and rows were skipped) or discard. Returns the side file's URI
        when one was written. A stale side file of an earlier run is removed on success."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if not ok or not self.count:
            self.target.discard()
            if ok:
                self.target.remove_existing()
            return None
        self.target.commit()
        return self.target.uri
