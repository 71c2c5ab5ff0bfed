"""Input files: find them (a file, a directory, a glob; local or any URI pyarrow or fsspec can
open) and stream each one in chunks of at most ``chunk_rows`` rows.

Parquet is read a record batch at a time (only the needed columns), CSV with pyarrow's
streaming reader, JSON Lines a line at a time: memory is bounded by the chunk, not the file.
Every chunk carries the file row number (1-based, a CSV header not counted) of each of its rows,
so a bad row can be named.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from ..errors import UsageError
from .options import Format

CSV_BLOCK_BYTES = 1 << 20  # pyarrow reads ~io_thread_count() blocks ahead
_GLOB_CHARS = "*?["
_SKIPPED_NAMES = ("_", ".")  # _SUCCESS, _committed_*, .crc files next to Spark's output


@dataclass(frozen=True)
class InputFile:
    fs: Any  # pyarrow.fs.FileSystem
    path: str
    name: str  # what messages call it: the path or URI the user would recognise
    format: Format
    size: int | None


@dataclass
class BadRow:
    """A row that could not be scored: where it is and why (the protocol's error code and
    message, as ``/invocations`` would answer)."""

    file: str
    row: int
    error_code: str
    message: str
    values: dict[str, Any] | None = None

    def describe(self) -> str:
        return f"{self.file} row {self.row}: {self.message}"

    def record(self) -> dict[str, Any]:
        return {"file": self.file, "row": self.row, "error_code": self.error_code,
                "message": self.message, "values": self.values}


@dataclass
class Chunk:
    """Up to ``chunk_rows`` rows of one file: the model's columns as a DataFrame, the kept
    columns as an Arrow table, the file row number of each row, rows that failed to parse."""

    file: InputFile
    frame: pd.DataFrame
    kept: pa.Table | None
    rows: np.ndarray
    bad: list[BadRow] = field(default_factory=list)
    bytes_read: int = 0


# --------------------------------------------------------------------------------------------
# file systems and discovery


def filesystem(uri: str) -> tuple[Any, str]:
    """(pyarrow FileSystem, path) for a local path or URI. ``s3://`` uses the usual AWS settings
    (credentials chain, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL[_S3]``); other
    schemes go through pyarrow, then fsspec when it is installed."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    scheme, _, rest = uri.partition("://")
    scheme = scheme.lower()
    if scheme == "file":
        return pafs.LocalFileSystem(), "/" + rest.lstrip("/")
    if scheme in ("s3", "s3a"):
        return _s3(), rest
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        pass
    try:
        import fsspec
    except ImportError:
        raise UsageError(
            f"cannot open {scheme}:// URIs", hint="install fsspec and its driver for it"
        ) from None
    fs, path = fsspec.core.url_to_fs(uri)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _s3() -> Any:
    options: dict[str, Any] = {}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        options["endpoint_override"] = host.rstrip("/") if host else endpoint
        options["scheme"] = scheme if host else "https"
    return pafs.S3FileSystem(**options)


def discover(uri: str, fmt: Format | None = None) -> list[InputFile]:
    """The input files named by ``uri`` (a file, a directory of files, a glob), sorted.
    Directories are searched recursively for files of a known format; names starting with
    ``_`` or ``.`` are left out."""
    fs, path = filesystem(uri)
    prefix = uri[: len(uri) - len(path)] if uri.endswith(path) else ""
    if any(ch in path for ch in _GLOB_CHARS):
        base = path
        while any(ch in base for ch in _GLOB_CHARS):
            base = base.rsplit("/", 1)[0] if "/" in base else ""
        infos = _list(fs, base or ".", uri)
        found = [i for i in infos if fnmatch.fnmatchcase(i.path, path)]
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise UsageError(f"input {uri!r} does not exist")
        found = [info] if info.type == pafs.FileType.File else [
            i for i in _list(fs, path, uri) if fmt or Format.from_name(i.base_name)
        ]
    files = []
    for info in sorted(found, key=lambda i: i.path):
        if info.type != pafs.FileType.File or info.base_name.startswith(_SKIPPED_NAMES):
            continue
        name = prefix + info.path if prefix else info.path
        file_fmt = fmt or Format.from_name(info.base_name)
        if file_fmt is None:
            raise UsageError(
                f"cannot tell the format of {name!r}",
                hint="name input files .csv, .parquet or .jsonl, or pass --input-format",
            )
        files.append(InputFile(fs, info.path, name, file_fmt, info.size))
    if not files:
        raise UsageError(f"no input files found at {uri!r}",
                         hint="give a file, a directory of .csv/.parquet/.jsonl files or a glob")
    return files


def _list(fs: Any, base: str, uri: str) -> list[Any]:
    try:
        return fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except FileNotFoundError:
        raise UsageError(f"input {uri!r} does not exist") from None


# --------------------------------------------------------------------------------------------
# columns


def file_columns(file: InputFile) -> list[str] | None:
    """The column names of a Parquet or CSV file (None for JSON Lines: names are per row)."""
    if file.format is Format.PARQUET:
        import pyarrow.parquet as pq

        with file.fs.open_input_file(file.path) as f:
            return list(pq.ParquetFile(f).schema_arrow.names)
    if file.format is Format.CSV:
        with file.fs.open_input_stream(file.path) as f:
            head = f.read(1 << 20)
        line = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8-sig", errors="replace")
        names = next(csv.reader([line]), [])
        if not names:
            raise UsageError(f"{file.name} has no header row",
                             hint="CSV input needs a header row of column names")
        return names
    return None


def parquet_rows(file: InputFile) -> int:
    import pyarrow.parquet as pq

    with file.fs.open_input_file(file.path) as f:
        return pq.ParquetFile(f).metadata.num_rows


# --------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class ReadSpec:
    """What to read from every file: the model's columns (with their MLflow types, None for a
    model without a column signature: everything not kept) and the kept columns."""

    model_columns: dict[str, str] | None
    keep: tuple[str, ...]
    chunk_rows: int
    # the protocol's column-name check, for JSON Lines rows whose keys differ from the
    # signature's (each row names its own columns); raises ProtocolError
    check_names: Callable[[list[str]], None] | None = None


def read_chunks(file: InputFile, spec: ReadSpec) -> Iterator[Chunk]:
    if file.format is Format.PARQUET:
        return _parquet_chunks(file, spec)
    if file.format is Format.CSV:
        return _csv_chunks(file, spec)
    return _jsonl_chunks(file, spec)


def _split(spec: ReadSpec, names: Sequence[str]) -> tuple[list[str], list[str]]:
    keep = [c for c in spec.keep if c in names]
    if spec.model_columns is None:
        model = [c for c in names if c not in spec.keep]
    else:
        model = [c for c in names if c in spec.model_columns]
    return model, keep


def _parquet_chunks(file: InputFile, spec: ReadSpec) -> Iterator[Chunk]:
    """One row group at a time. pyarrow's default pre-buffers every row group of the file
    (memory ~ the file); here a local file is read without pre-buffering and a remote one
    pre-buffers one row group (coalesced ranged reads), so memory ~ one row group + a chunk."""
    import pyarrow.parquet as pq

    local = isinstance(file.fs, pafs.LocalFileSystem)
    with file.fs.open_input_file(file.path) as f:
        pf = pq.ParquetFile(f, pre_buffer=not local)
        names = pf.schema_arrow.names
        wanted = [c for c in names if c in spec.keep or spec.model_columns is None
                  or c in spec.model_columns]

        def batches() -> Iterator[pa.RecordBatch]:
            for group in range(pf.num_row_groups):
                yield from pf.iter_batches(batch_size=spec.chunk_rows, row_groups=[group],
                                           columns=wanted, use_threads=True)

        row = 1
        for table in _rechunk(batches(), spec.chunk_rows):
            model, keep = _split(spec, table.column_names)
            n = table.num_rows
            yield Chunk(file, table.select(model).to_pandas(),
                        table.select(keep) if keep else None,
                        np.arange(row, row + n, dtype=np.int64))
            row += n


def _rechunk(batches: Iterator[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Tables of exactly ``rows`` rows (the last one fewer) from batches of any size."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows).combine_chunks()
            rest = table.slice(rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending).combine_chunks()


_CSV_NUMBERS = {"double": pa.float64(), "float": pa.float64(), "long": pa.int64(),
                "integer": pa.int64()}


def _csv_chunks(file: InputFile, spec: ReadSpec) -> Iterator[Chunk]:
    """First the fast way: numeric signature columns parsed as numbers by pyarrow's C++ reader,
    on its threads. The first cell that is not a number (a typo, ``true``, ``1.5`` in a long
    column) or row with a wrong field count makes the file be read again from its start the
    careful way (in order, as text: each bad row named with its row number and the protocol's
    own message), the chunks already given skipped (they held no bad row, and both ways cut
    the same chunks)."""
    given = 0
    try:
        for chunk in _csv_read(file, spec, fast=True):
            given += 1
            yield chunk
        return
    except _Reread:
        pass
    except pa.ArrowInvalid as exc:
        if "conversion error" not in str(exc).lower():
            raise
    for index, chunk in enumerate(_csv_read(file, spec, fast=False)):
        if index >= given:
            yield chunk


class _Reread(Exception):
    """A row with a wrong field count met on the fast path."""


def _csv_read(file: InputFile, spec: ReadSpec, *, fast: bool) -> Iterator[Chunk]:
    import pyarrow.csv as pacsv

    names = file_columns(file) or []
    model, keep = _split(spec, names)
    types: dict[str, Any] = {}
    if spec.model_columns is not None:
        types = {c: (_CSV_NUMBERS.get(spec.model_columns[c], pa.string()) if fast
                     else pa.string()) for c in model}
    invalid: list[tuple[int, str]] = []  # (data row, message) of rows with a wrong field count

    def on_invalid(row: Any) -> str:
        if fast:  # its row number is known only when parsed in order: read again
            invalid.append((-1, ""))
            return "skip"
        number = row.number - 1 if row.number is not None else -1  # header line not counted
        invalid.append((number, f"the row has {row.actual_columns} fields; the header has "
                                f"{row.expected_columns}"))
        return "skip"

    with _open_sequential(file) as f:
        reader = pacsv.open_csv(
            f,
            # the careful way on one thread: a row with a wrong field count is reported with
            # its line number only when the file is parsed in order
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=fast),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types=types, include_columns=model + keep, strings_can_be_null=True,
            ),
        )
        next_row = 1
        pending: list[pa.RecordBatch] = []
        pending_rows = 0

        def emit(batches: list[pa.RecordBatch], final: bool) -> Chunk:
            nonlocal next_row
            table = pa.Table.from_batches(batches, schema=reader.schema)
            n = table.num_rows
            gone = {r for r, _ in invalid if r >= next_row}
            if not gone:
                rows = np.arange(next_row, next_row + n, dtype=np.int64)
                next_row += n
            else:
                candidates = np.arange(next_row, next_row + n + len(gone), dtype=np.int64)
                rows = candidates[~np.isin(candidates, list(gone))][:n]
                next_row = int(rows[-1]) + 1 if n else next_row
            last = int(rows[-1]) if n else next_row - 1
            mine = [(r, m) for r, m in invalid if final or r <= last]
            for item in mine:
                invalid.remove(item)
            bad = [BadRow(file.name, r, "BAD_REQUEST", m) for r, m in sorted(mine)]
            return Chunk(file, _typed_frame(table.select(model), spec),
                         table.select(keep) if keep else None,
                         rows, bad, bytes_read=_tell(f))

        for batch in reader:
            if fast and invalid:  # every block up to this batch is parsed: none emitted yet
                raise _Reread
            pending.append(batch)
            pending_rows += batch.num_rows
            while pending_rows >= spec.chunk_rows:
                table = pa.Table.from_batches(pending, schema=reader.schema)
                head, tail = table.slice(0, spec.chunk_rows), table.slice(spec.chunk_rows)
                yield emit(head.to_batches(), False)
                pending = tail.to_batches()
                pending_rows = tail.num_rows
        if fast and invalid:
            raise _Reread
        if pending_rows or invalid:
            yield emit(pending, True)


def _typed_frame(table: pa.Table, spec: ReadSpec) -> pd.DataFrame:
    """CSV text to the values a JSON request would carry: numbers where a signature column is
    numeric and the text is a number, booleans for ``true``/``false``; text that is not left as
    it is, so the signature check names the row and the value."""
    import pyarrow.compute as pc

    if spec.model_columns is None:
        return table.to_pandas()
    if all(table.schema.field(n).type == _CSV_NUMBERS.get(spec.model_columns.get(n) or "")
           for n in table.column_names):
        return table.to_pandas()  # parsed as numbers already: one block, no cast
    out: dict[str, Any] = {}
    for name in table.column_names:
        column = table.column(name)
        kind = spec.model_columns.get(name)
        targets = {"double": (pa.float64(),), "float": (pa.float64(),),
                   "long": (pa.int64(), pa.float64()), "integer": (pa.int64(), pa.float64()),
                   "boolean": (pa.bool_(),)}.get(kind or "", ())
        converted = None
        for target in targets:
            try:
                converted = pc.cast(column, target).to_numpy(zero_copy_only=False)
                break
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        if converted is None and kind in ("double", "float", "long", "integer"):
            text = column.to_pandas().astype(object)
            numbers = pd.to_numeric(text, errors="coerce")
            values = numbers.to_numpy(dtype=object)
            unparsed = numbers.isna().to_numpy() & text.notna().to_numpy()
            values[unparsed] = text.to_numpy()[unparsed]
            converted = values
        if converted is None:
            converted = column.to_pandas().to_numpy(dtype=object)
        out[name] = converted
    return pd.DataFrame(out)


def _jsonl_chunks(file: InputFile, spec: ReadSpec) -> Iterator[Chunk]:
    from mldeploy.container.errors import ProtocolError

    expected = None if spec.model_columns is None else set(spec.model_columns)
    keep = set(spec.keep)
    with _open_sequential(file) as raw:
        stream = io.BufferedReader(_Readable(raw), buffer_size=1 << 20)
        line_no = 0
        while True:
            records: list[dict[str, Any]] = []
            rows: list[int] = []
            bad: list[BadRow] = []
            for line in stream:
                line_no += 1
                if not line.strip():
                    continue
                try:
                    doc = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    bad.append(BadRow(file.name, line_no, "BAD_REQUEST",
                                      f"the line is not valid JSON: {exc}"))
                    continue
                if not isinstance(doc, dict):
                    bad.append(BadRow(file.name, line_no, "BAD_REQUEST",
                                      "the line is not a JSON object of column: value"))
                    continue
                if expected is not None and spec.check_names is not None and \
                        doc.keys() - keep != expected:
                    try:
                        spec.check_names([k for k in doc if k not in keep])
                    except ProtocolError as exc:
                        bad.append(BadRow(file.name, line_no, exc.error_code, exc.message))
                        continue
                records.append(doc)
                rows.append(line_no)
                if len(records) >= spec.chunk_rows:
                    break
            if not records and not bad:
                return
            kept_values = {c: [r.pop(c, None) for r in records] for c in spec.keep}
            frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
            kept = pa.table(kept_values) if spec.keep else None
            yield Chunk(file, frame, kept, np.asarray(rows, dtype=np.int64), bad,
                        bytes_read=_tell(raw))


def _open_sequential(file: InputFile) -> Any:
    """A local file opened seekable (its position gives the progress), a remote one as a
    stream (sequential reads, no ranged requests)."""
    if isinstance(file.fs, pafs.LocalFileSystem):
        return file.fs.open_input_file(file.path)
    return file.fs.open_input_stream(file.path)


def _tell(f: Any) -> int:
    try:
        return f.tell()
    except OSError:
        return 0


class _Readable(io.RawIOBase):
    """A pyarrow input stream as a raw binary file (for io.BufferedReader's line iteration)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
