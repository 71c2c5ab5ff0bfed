"""Media types: what a request body is (``Content-Type``) and what the answer should be
(``Accept``), and the answer written as CSV or JSON Lines (one line per row, as SageMaker Batch
Transform's ``AssembleWith=Line`` expects).
"""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson

from .errors import ProtocolError

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
JSONLINES_TYPE = "application/jsonlines"
PARQUET_TYPE = "application/vnd.apache.parquet"

# request media type -> kind
REQUEST_KINDS = {
    JSON_TYPE: "json",
    CSV_TYPE: "csv",
    JSONLINES_TYPE: "jsonlines",
    "application/jsonl": "jsonlines",
    "application/x-jsonlines": "jsonlines",
    PARQUET_TYPE: "parquet",
}
# answer media types, in our order of preference
ANSWER_TYPES = (JSON_TYPE, CSV_TYPE, JSONLINES_TYPE)


def request_kind(content_type: str | None) -> str:
    """``json``, ``csv``, ``jsonlines`` or ``parquet``; 415 for anything else (including a charset
    other than UTF-8 and unknown parameters)."""
    if not content_type:
        raise ProtocolError(
            "UNSUPPORTED_MEDIA_TYPE",
            "missing Content-Type header: send 'Content-Type: application/json' "
            "(or 'text/csv', 'application/jsonlines')",
        )
    mime, *params = (part.strip() for part in content_type.split(";"))
    mime = mime.lower()
    for param in params:
        key, _, value = param.partition("=")
        key, value = key.strip().lower(), value.strip().strip('"').lower()
        if key == "charset":
            if value not in ("utf-8", "utf8"):
                raise ProtocolError(
                    "UNSUPPORTED_MEDIA_TYPE",
                    f"charset {value!r} is not supported: encode the body as UTF-8",
                )
        elif key:
            raise ProtocolError(
                "UNSUPPORTED_MEDIA_TYPE",
                f"unknown Content-Type parameter {key!r}: only 'charset=utf-8' is accepted",
            )
    kind = REQUEST_KINDS.get(mime)
    if kind is None:
        raise ProtocolError(
            "UNSUPPORTED_MEDIA_TYPE",
            f"Content-Type {mime!r} is not supported: use 'application/json', 'text/csv', "
            f"'application/jsonlines' or '{PARQUET_TYPE}'",
        )
    return kind


def answer_type(accept: str | None) -> str:
    """The answer's media type for an ``Accept`` header: JSON unless the client asks only for
    CSV or JSON Lines (quality values honoured); 406 when it accepts none of the three."""
    if not accept or not accept.strip():
        return JSON_TYPE
    best, best_q = None, 0.0
    for item in accept.split(","):
        mime, *params = (p.strip() for p in item.split(";"))
        mime = mime.lower()
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if mime in ("*/*", "application/*"):
            mime = JSON_TYPE
        elif mime == "text/*":
            mime = CSV_TYPE
        elif mime in ("application/jsonl", "application/x-jsonlines"):
            mime = JSONLINES_TYPE
        if mime in ANSWER_TYPES and q > 0 and (
            q > best_q or (q == best_q and ANSWER_TYPES.index(mime) < ANSWER_TYPES.index(best))
        ):
            best, best_q = mime, q
    if best is None:
        raise ProtocolError(
            "NOT_ACCEPTABLE",
            f"Accept {accept[:80]!r} names no format this server writes: accept "
            f"{', '.join(ANSWER_TYPES)}",
        )
    return best


def rows_of(payload: Any) -> list[Any]:
    """The answer's rows: a list stays a list (one row per item), a dict of equal-length lists
    (named outputs) becomes one dict per row, anything else is one row."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and payload and all(isinstance(v, list) for v in payload.values()):
        lengths = {len(v) for v in payload.values()}
        if len(lengths) == 1:
            (n,) = lengths
            return [{k: v[i] for k, v in payload.items()} for i in range(n)]
    return [payload]


def to_jsonlines(payload: Any) -> bytes:
    """One JSON value per row, each line ending in ``\\n``."""
    return b"".join(
        orjson.dumps(row, option=orjson.OPT_NON_STR_KEYS) + b"\n" for row in rows_of(payload)
    )


def to_csv(payload: Any) -> bytes:
    """One CSV line per row, no header: a scalar per row, a list row's values, or a record's
    values in key order (the order of the model's output columns)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows_of(payload):
        if isinstance(row, dict):
            writer.writerow(_cell(v) for v in row.values())
        elif isinstance(row, list):
            writer.writerow(_cell(v) for v in row)
        else:
            writer.writerow([_cell(row)])
    return out.getvalue().encode("utf-8")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode("utf-8")
    return value
