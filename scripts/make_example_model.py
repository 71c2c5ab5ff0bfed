"""Regenerate the example model shipped in src/mldeploy/examples/classifier.

A logistic regression on 20 float features (synthetic, fixed seed), saved as an MLflow model with a
signature and an input example. Run from the project root:

    .venv/bin/python scripts/make_example_model.py
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

DEST = Path(__file__).resolve().parent.parent / "src" / "mldeploy" / "examples" / "classifier"
N_FEATURES = 20


def main() -> int:
    x, y = make_classification(
        n_samples=2000, n_features=N_FEATURES, n_informative=8, random_state=7
    )
    columns = [f"f{i}" for i in range(N_FEATURES)]
    frame = pd.DataFrame(x, columns=columns)
    model = LogisticRegression(max_iter=500).fit(frame, y)
    example = frame.head(3)
    signature = infer_signature(example, model.predict(example).astype(np.int64))
    if DEST.exists():
        shutil.rmtree(DEST)
    mlflow.sklearn.save_model(
        model,
        str(DEST),
        signature=signature,
        input_example=example,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
    )
    print(f"saved to {DEST} (train accuracy {model.score(frame, y):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
