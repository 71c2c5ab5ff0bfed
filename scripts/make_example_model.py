"""Regenerate an example model shipped in src/mldeploy/examples/.

``classifier``: a logistic regression on 20 float features (synthetic, fixed seed), saved as an
MLflow model with a signature and an input example. ``classifier_v2``: the same trained on the
opposite labels, so every answer differs from ``classifier``'s (the conformance suite's second
model: "replace serves the new model" is asserted on it). Run from the project root:

    .venv/bin/python scripts/make_example_model.py [classifier|classifier_v2]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

EXAMPLES = Path(__file__).resolve().parent.parent / "src" / "mldeploy" / "examples"
N_FEATURES = 20


def main(name: str = "classifier") -> int:
    if name not in ("classifier", "classifier_v2"):
        print(f"no example model named {name!r}: classifier or classifier_v2", file=sys.stderr)
        return 2
    dest = EXAMPLES / name
    x, y = make_classification(
        n_samples=2000, n_features=N_FEATURES, n_informative=8, random_state=7
    )
    columns = [f"f{i}" for i in range(N_FEATURES)]
    frame = pd.DataFrame(x, columns=columns)
    if name == "classifier_v2":
        y = 1 - y
    model = LogisticRegression(max_iter=500).fit(frame, y)
    example = frame.head(3)
    signature = infer_signature(example, model.predict(example).astype(np.int64))
    if dest.exists():
        shutil.rmtree(dest)
    mlflow.sklearn.save_model(
        model,
        str(dest),
        signature=signature,
        input_example=example,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
    )
    print(f"saved to {dest} (train accuracy {model.score(frame, y):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
