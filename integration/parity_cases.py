"""The requests of the MLflow parity suite (test_parity_mlflow.py) and the one table of intended
differences. Each case: (model group, id, Content-Type, body bytes, Accept or None)."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import orjson

JSON = "application/json"
CSV = "text/csv"
JSONL = "application/jsonlines"


def _j(doc: Any) -> bytes:
    return json.dumps(doc).encode()  # Python's json: writes NaN / Infinity as MLflow clients do


_F = [f"f{i}" for i in range(20)]
_ROW = [round(0.1 * i - 1, 2) for i in range(20)]
_ROW2 = [round(1 - 0.07 * i, 2) for i in range(20)]


def _split(rows, columns=_F, **extra):
    return {"dataframe_split": {"columns": columns, "data": rows, **extra}}


def _parquet(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=_F).to_parquet()


def _rec(row):
    return dict(zip(_F, row, strict=True))


def _with(row, i, value):
    row = list(row)
    row[i] = value
    return row


def _csv(rows, header=True):
    lines = [",".join(_F)] if header else []
    lines += [",".join(str(v) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


# a value only in error cases: the suite checks it never comes back in our answers
_SECRET = "ZZSECRETZZ"
_B64 = base64.b64encode(b"\x00\x01raw").decode()
_TYPES_ROW = {
    "when": "2024-05-06T07:08:09", "blob": _B64, "tags": ["a", "b"], "obj": {"a": 1, "b": "x"},
    "scores": {"k": 0.5}, "anything": [1, "two"],
}

CASES: list[tuple[str, str, str, bytes, str | None]] = [
    # ------------------------------------------------------------------ classifier (fast path)
    ("classifier", "split", JSON, _j(_split([_ROW, _ROW2])), None),
    ("classifier", "split_reordered", JSON,
     _j(_split([list(reversed(_ROW))], list(reversed(_F)))), None),
    ("classifier", "split_with_index", JSON, _j(_split([_ROW, _ROW2], index=[7, 9])), None),
    ("classifier", "records", JSON, _j({"dataframe_records": [_rec(_ROW)]}), None),
    ("classifier", "instances_records", JSON, _j({"instances": [_rec(_ROW)]}), None),
    ("classifier", "inputs_columns", JSON,
     _j({"inputs": {f: [v] for f, v in zip(_F, _ROW, strict=True)}}), None),
    ("classifier", "inputs_rows", JSON, _j({"inputs": [_ROW, _ROW2]}), None),
    ("classifier", "instances_rows", JSON, _j({"instances": [_ROW]}), None),
    ("classifier", "ints_in_double", JSON, _j(_split([[int(v) for v in _ROW]])), None),
    ("classifier", "csv_header", CSV, _csv([_ROW, _ROW2]), None),
    ("classifier", "parquet", "application/vnd.apache.parquet", _parquet([_ROW, _ROW2]), None),
    ("classifier", "params_ignored", JSON, _j({**_split([_ROW]), "params": {}}), None),
    ("classifier", "nan_literal", JSON, _j(_split([_with(_ROW, 3, math.nan)])), None),
    ("classifier", "null_in_double", JSON, _j(_split([_with(_ROW, 3, None)])), None),
    ("classifier", "malformed_split_index", JSON,
     _j(_split([_ROW, _ROW2, _ROW], index=[1, 2])), None),
    ("classifier", "split_index_broadcasts_one_row", JSON,
     _j(_split([_ROW], index=[1, 2])), None),
    ("classifier", "string_in_double", JSON, _j(_split([_with(_ROW, 3, _SECRET)])), None),
    ("classifier", "bool_in_double", JSON, _j(_split([_with(_ROW, 3, True)])), None),
    ("classifier", "unknown_column", JSON, _j(_split([_ROW + [1.0]], _F + ["nope"])), None),
    ("classifier", "missing_column", JSON, _j(_split([_ROW[:19]], _F[:19])), None),
    ("classifier", "duplicate_columns", JSON, _j(_split([_ROW + [1.0]], _F + ["f0"])), None),
    ("classifier", "ragged_rows", JSON, _j(_split([_ROW, _ROW[:3]])), None),
    ("classifier", "bare_list", JSON, _j([_ROW]), None),
    ("classifier", "two_keys", JSON, _j({**_split([_ROW]), "inputs": [_ROW]}), None),
    ("classifier", "no_key", JSON, b"{}", None),
    ("classifier", "not_json", JSON, b"{nope", None),
    ("classifier", "text_plain", "text/plain", b"x", None),
    ("classifier", "latin1", "application/json; charset=latin-1", _j(_split([_ROW])), None),
    ("classifier", "unknown_top_level_key", JSON, _j({**_split([_ROW]), "extra": 1}), None),
    ("classifier", "csv_headerless", CSV, _csv([_ROW, _ROW2], header=False), None),
    ("classifier", "csv_extra_fields", CSV, _csv([[0.5] + _ROW]), None),
    ("classifier", "csv_true", CSV, _csv([_with(_ROW, 3, "true")]), None),
    ("classifier", "jsonlines_records", JSONL,
     b"\n".join(orjson.dumps(_rec(r)) for r in (_ROW, _ROW2)) + b"\n", None),
    ("classifier", "accept_csv", JSON, _j(_split([_ROW, _ROW2])), CSV),
    ("classifier", "accept_jsonlines", JSON, _j(_split([_ROW, _ROW2])), JSONL),
    ("classifier", "azure_input_data", JSON,
     _j({"input_data": {"columns": _F, "index": [0], "data": [_ROW]}}), None),
    # ------------------------------------------------------------------ numpy (unnamed tensor)
    ("numpy", "split_int_columns", JSON,
     _j({"dataframe_split": {"columns": [0, 1, 2, 3], "data": [[1, 2, 3, 4.5]]}}), None),
    ("numpy", "split_no_columns", JSON,
     _j({"dataframe_split": {"data": [[1, 2, 3, 4.5], [0, 0, 0, 0]]}}), None),
    ("numpy", "instances", JSON, _j({"instances": [[1, 2, 3, 4.5]]}), None),
    ("numpy", "inputs", JSON, _j({"inputs": [[1, 2, 3, 4.5]]}), None),
    ("numpy", "wrong_shape", JSON, _j({"inputs": [[1, 2]]}), None),
    ("numpy", "string_in_tensor", JSON, _j({"instances": [[1, 2, 3, _SECRET]]}), None),
    ("numpy", "string_in_split", JSON, _j({"dataframe_split": {"data": [[_SECRET, 2, 3, 4]]}}),
     None),
    ("numpy", "csv", CSV, b"0,1,2,3\n1,2,3,4.5\n", None),
    # ------------------------------------------------------------------ echo (no signature)
    ("echo", "split_int_columns", JSON,
     _j({"dataframe_split": {"columns": [0, 1], "data": [[1, "a"], [2, None]]}}), None),
    ("echo", "records", JSON, _j({"dataframe_records": [{"a": 1, "b": "x"}, {"a": 2}]}), None),
    ("echo", "inputs_list", JSON, _j({"inputs": [[1, 2], [3, 4]]}), None),
    ("echo", "inputs_dict", JSON, _j({"inputs": {"x": [1, 2], "y": [3.5, 4.5]}}), None),
    ("echo", "instances_records", JSON, _j({"instances": [{"a": 1}, {"a": 2}]}), None),
    ("echo", "nan_and_infinity", JSON,
     _j({"dataframe_split": {"columns": ["a"], "data": [[math.nan], [math.inf]]}}), None),
    ("echo", "csv", CSV, b"a,b\n1,x\n2,y\n", None),
    ("echo", "sparse_records", JSON,
     _j({"dataframe_records": [{f"k{i}": 1} for i in range(1001)]}), None),
    ("echo", "completions_prompt", JSON, _j({"prompt": "hello", "max_tokens": 5}), None),
    ("echo", "embeddings_input", JSON, _j({"input": ["a", "b"]}), None),
    ("echo", "chat_messages", JSON,
     _j({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}), None),
    # ------------------------------------------------------------------ every other ColSpec type
    ("types", "records_all_types", JSON, _j({"dataframe_records": [_TYPES_ROW]}), None),
    ("types", "split_all_types", JSON,
     _j({"dataframe_split": {"columns": list(_TYPES_ROW), "data": [list(_TYPES_ROW.values())]}}),
     None),
    ("types", "optional_present", JSON,
     _j({"dataframe_records": [{**_TYPES_ROW, "note": "n"}]}), None),
    ("types", "object_missing_optional_property", JSON,
     _j({"dataframe_records": [{**_TYPES_ROW, "obj": {"a": 2}}]}), None),
    ("types", "object_wrong_type", JSON,
     _j({"dataframe_records": [{**_TYPES_ROW, "obj": {"a": "not a long"}}]}), None),
    ("types", "array_wrong_type", JSON,
     _j({"dataframe_records": [{**_TYPES_ROW, "tags": [1, 2]}]}), None),
    ("types", "datetime_not_a_date", JSON,
     _j({"dataframe_records": [{**_TYPES_ROW, "when": _SECRET}]}), None),
    ("types", "binary_not_base64", JSON,
     _j({"dataframe_records": [{**_TYPES_ROW, "blob": _SECRET + "!"}]}), None),
    ("types", "map_wrong_type", JSON,
     _j({"dataframe_records": [{**_TYPES_ROW, "scores": {"k": _SECRET}}]}), None),
    ("types", "object_not_an_object", JSON,
     _j({"dataframe_records": [{**_TYPES_ROW, "obj": _SECRET}]}), None),
    ("types", "missing_required", JSON,
     _j({"dataframe_records": [{k: v for k, v in _TYPES_ROW.items() if k != "tags"}]}), None),
    # ------------------------------------------------------------------ named tensors
    ("tensor", "inputs", JSON, _j({"inputs": {"a": [[1, 2], [3, 4]], "b": [5, 6]}}), None),
    ("tensor", "instances", JSON,
     _j({"instances": [{"a": [1, 2], "b": 5}, {"a": [3, 4], "b": 6}]}), None),
    ("tensor", "azure_named_tensors", JSON,
     _j({"input_data": {"a": [[1, 2], [3, 4]], "b": [5, 6]}}), None),
    ("tensor", "wrong_dtype", JSON, _j({"inputs": {"a": [["x", "y"]], "b": [5]}}), None),
    ("tensor", "string_in_int_tensor", JSON, _j({"inputs": {"a": [[1, 2]], "b": [_SECRET]}}),
     None),
    ("tensor", "wrong_shape", JSON, _j({"inputs": {"a": [1, 2, 3], "b": [5]}}), None),
    # ------------------------------------------------------------------ params schema
    ("params", "defaults", JSON,
     _j({"dataframe_records": [{"name": "a", "count": 2, "flag": True}]}), None),
    ("params", "all_params", JSON,
     _j({"dataframe_records": [{"name": "a", "count": 2, "flag": True, "score": 0.5}],
         "params": {"scale": 2, "ids": [3, 4], "label": "y", "strict": True,
                    "since": "2025-02-03T04:05:06"}}), None),
    ("params", "bad_param_type", JSON,
     _j({"dataframe_records": [{"name": "a", "count": 2, "flag": True}],
         "params": {"scale": _SECRET}}), None),
    ("params", "bad_param_array", JSON,
     _j({"dataframe_records": [{"name": "a", "count": 2, "flag": True}],
         "params": {"ids": [_SECRET]}}), None),
    ("params", "bad_param_datetime", JSON,
     _j({"dataframe_records": [{"name": "a", "count": 2, "flag": True}],
         "params": {"since": _SECRET}}), None),
    ("params", "bad_param_not_scalar", JSON,
     _j({"dataframe_records": [{"name": "a", "count": 2, "flag": True}],
         "params": {"label": [_SECRET]}}), None),
    ("params", "null_in_long", JSON,
     _j({"dataframe_records": [{"name": "a", "count": None, "flag": True}]}), None),
    ("params", "float_in_long", JSON,
     _j({"dataframe_records": [{"name": "a", "count": 1.5, "flag": True}]}), None),
    ("params", "string_in_bool", JSON,
     _j({"dataframe_records": [{"name": "a", "count": 1, "flag": "yes"}]}), None),
    ("params", "inputs_rows", JSON, _j({"inputs": [["a", 2, True, 0.5]]}), None),
    ("params", "model_raises", JSON,
     _j({"dataframe_records": [{"name": "boom", "count": 1, "flag": True}]}), None),
    # ------------------------------------------------------------------ chat model
    ("chat", "messages", JSON,
     _j({"messages": [{"role": "user", "content": "hi"}], "temperature": 0.5,
         "max_tokens": 7}), None),
    ("chat", "bad_temperature", JSON,
     _j({"messages": [{"role": "user", "content": "hi"}], "temperature": _SECRET}), None),
    ("chat", "messages_not_a_list", JSON, _j({"messages": _SECRET}), None),
]

# case id -> (our status, our error_code or None, why we differ from `mlflow models serve`).
# The suite checks ours gives exactly this AND that MLflow's answer differs (a stale row fails).
DIFFERENCES: dict[str, tuple[int, str | None, str]] = {
    "classifier/bool_in_double": (
        400, "BAD_REQUEST",
        "stricter: MLflow casts JSON true/false to 1.0/0.0 in a double column",
    ),
    "classifier/unknown_top_level_key": (
        400, "BAD_REQUEST",
        "stricter: MLflow ignores unknown top-level keys (a typo such as 'param' is lost silently)",
    ),
    "classifier/csv_headerless": (
        200, None,
        "more: the SageMaker SDK's CSVSerializer and Batch Transform send no header; MLflow takes "
        "the first row as names",
    ),
    "classifier/csv_extra_fields": (
        400, "BAD_REQUEST",
        "stricter: MLflow (pandas) takes the extra leading field as the index and scores shifted "
        "columns",
    ),
    "classifier/csv_true": (
        400, "BAD_REQUEST",
        "stricter: pandas' float parser reads true/FALSE as 1.0/0.0 in MLflow; JSON refuses them",
    ),
    "classifier/jsonlines_records": (
        200, None, "more: Batch Transform's SplitType=Line; MLflow answers 415",
    ),
    "classifier/accept_csv": (
        200, None, "more: answers in the format Accept asks for; MLflow always writes JSON",
    ),
    "classifier/accept_jsonlines": (
        200, None, "more: answers in the format Accept asks for; MLflow always writes JSON",
    ),
    "classifier/azure_input_data": (
        200, None, "more: Azure ML's no-code body; MLflow answers 400 (no input key)",
    ),
    "classifier/unknown_column": (
        400, "INVALID_PARAMETER_VALUE",
        "stricter: MLflow drops columns the signature does not name without a word",
    ),
    "numpy/csv": (
        200, None,
        "more: MLflow cannot read CSV for a tensor signature (400 'TensorSpec only supports "
        "numpy types'); we read it as rows",
    ),
    "params/float_in_long": (
        400, "BAD_REQUEST", "stricter: MLflow truncates 1.5 to 1 in a long column",
    ),
    "params/string_in_bool": (
        400, "BAD_REQUEST", "stricter: MLflow casts any non-empty string ('yes', 'false') to True",
    ),
    "params/model_raises": (
        500, "MODEL_ERROR",
        "the model's own exception is a 500 (MLflow: 400 BAD_REQUEST for every exception the "
        "model raises), so a broken model pages its owner rather than looking like bad input",
    ),
    "classifier/split_index_broadcasts_one_row": (
        400, "BAD_REQUEST",
        "stricter: with one row of 'data' and more 'index' labels pandas repeats the row in "
        "MLflow; we ask for one label per row",
    ),
    "echo/sparse_records": (
        400, "BAD_REQUEST",
        "stricter: records whose keys barely overlap (1,001 records, 1,001 keys, 1,001 values) "
        "would make a frame of a million holes; MLflow builds it (5,000 such records took 180 s "
        "and 3.9 GB on our server before this check)",
    ),
    "tensor/azure_named_tensors": (
        200, None,
        "more: Azure ML's tensor form of 'input_data'; MLflow answers 400 (no input key)",
    ),
}
