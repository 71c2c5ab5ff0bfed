"""mldeploy: put an MLflow model behind a production endpoint on any target.

Nothing happens at import time: the public functions are imported on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "example_model_path"]


def example_model_path() -> str:
    """Path of the small scikit-learn classifier shipped with mldeploy (20 float features)."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent / "examples" / "classifier")
