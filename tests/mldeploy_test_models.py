"""Python models used by the tests (saved with code_paths so a served copy can import them)."""

from __future__ import annotations

import os
import time

import mlflow.pyfunc


class MixedModel(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        scale = (params or {}).get("scale", 1.0)
        out = []
        for row in model_input.to_dict(orient="records"):
            if row["name"] == "boom":
                raise ValueError("boom is not a valid name")
            out.append(
                {"label": f"{row['name']}-{int(row['count']) * 2}", "flag": not row["flag"],
                 "scale": scale}
            )
        return out


class SlowModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        time.sleep(float(os.environ.get("MLDEPLOY_TEST_LOAD_SLEEP", "0")))

    def predict(self, context, model_input, params=None):
        sleep = float(model_input.iloc[0]["sleep"]) if "sleep" in model_input else 0.0
        time.sleep(sleep)
        spin = float(model_input.iloc[0]["spin"]) if "spin" in model_input else 0.0
        end = time.perf_counter() + spin
        while time.perf_counter() < end:  # burns CPU, as a runaway model does
            pass
        return [len(model_input)]
