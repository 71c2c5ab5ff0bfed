"""What a batch run is asked to do: typed, validated once, before anything is read."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import UsageError

DEFAULT_CHUNK_ROWS = 100_000
MAX_CHUNK_ROWS = 10_000_000


class Format(str, enum.Enum):
    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"

    @classmethod
    def parse(cls, value: str | Format, what: str) -> Format:
        if isinstance(value, Format):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise UsageError(
                f"unknown {what} format {value!r}", hint="use csv, parquet or jsonl"
            ) from None

    @classmethod
    def from_name(cls, name: str) -> Format | None:
        """The format a file name says (``.csv``, ``.parquet``/``.pq``, ``.jsonl``/``.ndjson``,
        optionally followed by nothing else); None when it says none."""
        lower = name.lower()
        for suffixes, fmt in (
            ((".csv",), cls.CSV),
            ((".parquet", ".pq"), cls.PARQUET),
            ((".jsonl", ".ndjson"), cls.JSONL),
        ):
            if lower.endswith(suffixes):
                return fmt
        return None


class OnError(str, enum.Enum):
    FAIL = "fail"  # the first bad row stops the run; no output is left
    SKIP = "skip"  # bad rows go to the side file, the rest is scored


class Engine(str, enum.Enum):
    LOCAL = "local"
    SPARK = "spark"


@dataclass(frozen=True)
class BatchOptions:
    """One batch scoring run. ``input_format`` / ``output_format`` None: from the file names."""

    model_uri: str
    input: str
    output: str
    output_format: Format | None = None
    input_format: Format | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    keep: tuple[str, ...] = ()
    engine: Engine = Engine.LOCAL
    workers: int = 1
    on_error: OnError = OnError.FAIL
    overwrite: bool = False
    skipped_output: str | None = None  # default: OUTPUT + ".skipped.jsonl"
    master: str | None = None  # spark only
    progress: bool | None = None  # None: a bar when stderr is a terminal

    def __post_init__(self) -> None:
        if not self.input:
            raise UsageError("no input given", hint="pass -i FILE, DIRECTORY or GLOB")
        if not self.output:
            raise UsageError("no output given", hint="pass -o FILE")
        if not isinstance(self.chunk_rows, int) or not 1 <= self.chunk_rows <= MAX_CHUNK_ROWS:
            raise UsageError(
                f"--chunk-rows must be an integer from 1 to {MAX_CHUNK_ROWS:,}; "
                f"got {self.chunk_rows!r}"
            )
        if not isinstance(self.workers, int) or not 1 <= self.workers <= 256:
            raise UsageError(f"--workers must be an integer from 1 to 256; got {self.workers!r}")
        if len(set(self.keep)) != len(self.keep):
            raise UsageError("a --keep column is named twice")
        if self.master is not None and self.engine is not Engine.SPARK:
            raise UsageError("--master is for --engine spark")
        if self.engine is Engine.SPARK:
            if self.workers != 1:
                raise UsageError(
                    "--workers is for the local engine", hint="Spark sizes itself from --master"
                )
            if self.on_error is OnError.SKIP:
                raise UsageError(
                    "--on-error skip is for the local engine",
                    hint="on Spark the first bad row fails the job; score with --engine local to "
                         "skip rows",
                )

    @property
    def resolved_output_format(self) -> Format:
        if self.output_format is not None:
            return self.output_format
        fmt = Format.from_name(self.output.rstrip("/"))
        if fmt is None:
            raise UsageError(
                f"cannot tell the output format from {self.output!r}",
                hint="name it .csv, .parquet or .jsonl, or pass --format",
            )
        return fmt

    @property
    def skipped_path(self) -> str:
        return self.skipped_output or self.output.rstrip("/") + ".skipped.jsonl"
