#!/usr/bin/env python3
"""Save the small MLflow models the parity suite (integration/test_parity_mlflow.py) serves with
both `mlflow models serve` and `mldeploy serve`, one directory per model group:

    python scripts/make_parity_models.py OUTDIR

- ``classifier``: the shipped example model is used as is (20 double columns, the fast path).
- ``numpy``: scikit-learn regression trained on a NumPy array (unnamed tensor signature, -1 rows).
- ``echo``: no signature; returns its input (DataFrame, dict or array) unchanged.
- ``types``: echo under a signature of every other ColSpec type: datetime, binary, Array(string),
  Object, Map, AnyType, an optional column and a list-of-strings column.
- ``tensor``: named TensorSpecs (float32 ``(-1, 2)``, int64 ``(-1,)``); answers shapes and dtypes.
- ``params``: mixed column signature (string, long, boolean, optional double) with a params
  schema (double default, long array, string, boolean, datetime); answers rows and params.
- ``chat``: an ``mlflow.pyfunc.ChatModel`` (``messages`` + ``temperature`` / ``max_tokens``).

The classes live in ``__main__`` so cloudpickle saves them by value: the models load anywhere.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import mlflow.pyfunc
import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "mldeploy" / "examples" / "classifier"


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


class TensorShapes(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return {k: [list(v.shape), str(v.dtype), v.tolist()] for k, v in model_input.items()}


class RowsAndParams(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if (model_input["name"] == "boom").any():
            raise ValueError("boom is not a valid name")
        rows = model_input.astype(object).where(model_input.notna(), None)
        return {
            "rows": rows.to_dict(orient="records"),
            "params": {k: str(v) for k, v in sorted((params or {}).items())},
        }


class Chat(mlflow.pyfunc.ChatModel):
    def predict(self, context, messages, params):
        from mlflow.types.llm import ChatCompletionResponse

        text = f"{len(messages)} messages; last: {messages[-1].content}; " \
               f"temperature={params.temperature}; max_tokens={params.max_tokens}"
        return ChatCompletionResponse.from_dict({
            "id": "parity", "object": "chat.completion", "created": 0, "model": "parity",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
        })


def _save(dest: Path, **kw) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    mlflow.pyfunc.save_model(str(dest), pip_requirements=[], **kw)


def main(out: Path) -> None:
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec
    from mlflow.types.schema import AnyType, Array, Map, Object, Property
    from sklearn.linear_model import LinearRegression

    out.mkdir(parents=True, exist_ok=True)
    dest = out / "classifier"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(EXAMPLE, dest)

    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    reg = LinearRegression().fit(x, [1.0, 2.0, 3.0])
    dest = out / "numpy"
    if dest.exists():
        shutil.rmtree(dest)
    mlflow.sklearn.save_model(reg, str(dest), signature=infer_signature(x, reg.predict(x)),
                              pip_requirements=[])

    _save(out / "echo", python_model=Echo())

    types = Schema([
        ColSpec("datetime", "when"),
        ColSpec("binary", "blob"),
        ColSpec(Array("string"), "tags"),
        ColSpec(Object([Property("a", "long"), Property("b", "string", required=False)]), "obj"),
        ColSpec(Map("double"), "scores"),
        ColSpec(AnyType(), "anything"),
        ColSpec("string", "note", required=False),
    ])
    _save(out / "types", python_model=Echo(), signature=ModelSignature(inputs=types))

    tensors = Schema([
        TensorSpec(np.dtype("float32"), (-1, 2), "a"),
        TensorSpec(np.dtype("int64"), (-1,), "b"),
    ])
    _save(out / "tensor", python_model=TensorShapes(), signature=ModelSignature(inputs=tensors))

    mixed = Schema([
        ColSpec("string", "name"), ColSpec("long", "count"), ColSpec("boolean", "flag"),
        ColSpec("double", "score", required=False),
    ])
    params = ParamSchema([
        ParamSpec("scale", "double", 1.0),
        ParamSpec("ids", "long", [1, 2], shape=(-1,)),
        ParamSpec("label", "string", "x"),
        ParamSpec("strict", "boolean", False),
        ParamSpec("since", "datetime", np.datetime64("2024-01-01")),
    ])
    _save(out / "params", python_model=RowsAndParams(),
          signature=ModelSignature(inputs=mixed, params=params))

    _save(out / "chat", python_model=Chat())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_parity_models.py OUTDIR")
    main(Path(sys.argv[1]))
