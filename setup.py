"""Package list for the three mapped roots (metadata lives in pyproject.toml).

`src/mldeploy` -> `mldeploy`, `plugins` -> `mldeploy.plugins`, `container` -> `mldeploy.container`;
the mapping itself is `[tool.setuptools] package-dir` so editable installs keep working.
"""

from setuptools import find_packages, setup


def _packages(root: str, prefix: str) -> list[str]:
    return [prefix] + [f"{prefix}.{name}" for name in find_packages(root)]


setup(
    packages=_packages("src/mldeploy", "mldeploy")
    + _packages("plugins", "mldeploy.plugins")
    + _packages("container", "mldeploy.container")
)
