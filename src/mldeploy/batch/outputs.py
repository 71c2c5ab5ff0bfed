"""The prediction columns: names and types from the model's output signature, so integer class
labels stay integers (no ``result_type="double"``), and the model's answer turned into them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mldeploy.container.errors import ProtocolError

PREDICTION = "prediction"

# MLflow type name (ColSpec) or tensor dtype -> numpy dtype of the output column
_COLSPEC_TYPES = {
    "double": np.dtype("float64"), "float": np.dtype("float32"), "long": np.dtype("int64"),
    "integer": np.dtype("int32"), "boolean": np.dtype("bool"), "string": np.dtype("object"),
    "binary": np.dtype("object"), "datetime": np.dtype("datetime64[ns]"),
}


@dataclass(frozen=True)
class OutputColumn:
    name: str
    dtype: np.dtype | None  # None: whatever the model returns (no usable output signature)


@dataclass(frozen=True)
class OutputSpec:
    """The prediction columns. ``columns`` None: no output signature, names and types come from
    the model's first answer (the writer then holds every later chunk to that schema)."""

    columns: tuple[OutputColumn, ...] | None

    @classmethod
    def from_metadata(cls, meta: Any) -> OutputSpec:
        schema = meta.get_output_schema() if meta is not None else None
        if schema is None:
            return cls(None)
        if schema.is_tensor_spec():
            if len(schema.inputs) != 1:
                return cls(None)
            spec = schema.inputs[0]
            dtype, shape = np.dtype(spec.type), tuple(spec.shape or (-1,))
            name = spec.name or PREDICTION
            if len(shape) == 1:
                return cls((OutputColumn(name, dtype),))
            if len(shape) == 2 and shape[1] > 0:
                return cls(tuple(OutputColumn(f"{name}_{i}", dtype) for i in range(shape[1])))
            return cls(None)
        columns = []
        for i, spec in enumerate(schema.inputs):
            type_name = getattr(getattr(spec, "type", None), "name", None)
            name = spec.name or (PREDICTION if len(schema.inputs) == 1 else f"{PREDICTION}_{i}")
            columns.append(OutputColumn(name, _COLSPEC_TYPES.get(type_name)))
        return cls(tuple(columns))

    @property
    def names(self) -> tuple[str, ...] | None:
        return None if self.columns is None else tuple(c.name for c in self.columns)

    def frame(self, predictions: Any, rows: int) -> pd.DataFrame:
        """The model's answer for ``rows`` input rows as a DataFrame of prediction columns, cast
        to the signature's types. A ``MODEL_ERROR`` when it does not fit."""
        frame = _as_frame(predictions, self.columns)
        if len(frame) != rows:
            raise ProtocolError(
                "MODEL_ERROR",
                f"the model returned {len(frame)} predictions for {rows} rows",
            )
        if self.columns is None:
            return frame
        if len(frame.columns) != len(self.columns):
            raise ProtocolError(
                "MODEL_ERROR",
                f"the model returned {len(frame.columns)} output columns; its signature has "
                f"{len(self.columns)} ({', '.join(self.names or ())})",
            )
        out = {}
        for spec, name in zip(self.columns, frame.columns, strict=True):
            out[spec.name] = _cast(frame[name], spec)
        return pd.DataFrame(out, index=frame.index)


def _as_frame(predictions: Any, columns: tuple[OutputColumn, ...] | None) -> pd.DataFrame:
    names = [c.name for c in columns] if columns else None
    if isinstance(predictions, pd.DataFrame):
        frame = predictions.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        if names and set(names) <= set(frame.columns):
            frame = frame[names]
        return frame
    if isinstance(predictions, pd.Series):
        name = names[0] if names and len(names) == 1 else str(predictions.name or PREDICTION)
        return pd.DataFrame({name: predictions.to_numpy()})
    if isinstance(predictions, dict):
        return pd.DataFrame({str(k): np.asarray(v) for k, v in predictions.items()})
    if isinstance(predictions, list) and predictions and isinstance(predictions[0], dict):
        return pd.DataFrame.from_records(predictions)
    array = np.asarray(predictions)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim == 1:
        return pd.DataFrame({names[0] if names and len(names) == 1 else PREDICTION: array})
    if array.ndim == 2:
        given = names if names and len(names) == array.shape[1] else [
            f"{PREDICTION}_{i}" for i in range(array.shape[1])]
        return pd.DataFrame({n: array[:, i] for i, n in enumerate(given)})
    # higher ranks: one list value per row
    return pd.DataFrame({PREDICTION: list(array)})


def _cast(series: pd.Series, spec: OutputColumn) -> Any:
    values = series.to_numpy()
    dtype = spec.dtype
    if dtype is None or values.dtype == dtype:
        return values
    if dtype.kind in "iu":
        try:
            floats = values.astype(np.float64)
        except (TypeError, ValueError):
            raise _bad_output(spec, "integers") from None
        if not np.isfinite(floats).all() or not np.array_equal(floats, np.trunc(floats)):
            raise _bad_output(spec, "integers")
        return values.astype(dtype)
    if dtype.kind == "f":
        try:
            return values.astype(dtype)
        except (TypeError, ValueError):
            raise _bad_output(spec, "numbers") from None
    if dtype.kind == "b" and values.dtype.kind != "b":
        raise _bad_output(spec, "booleans")
    if dtype.kind == "M":
        return pd.to_datetime(series).to_numpy()
    return values.astype(object)


def _bad_output(spec: OutputColumn, what: str) -> ProtocolError:
    return ProtocolError(
        "MODEL_ERROR",
        f"the model's output '{spec.name}' must hold {what} by its output signature",
    )
