"""What an image must install: the model's requirements merged with mldeploy's runtime's.

Read from the model's ``python_env.yaml`` (its ``dependencies``, usually ``-r requirements.txt``),
else ``requirements.txt``, else the pip section of ``conda.yaml``. Conflicts with mldeploy's own
requirements are settled here, and every decision is returned as a human-readable note:

* ``mlflow`` (the full package, with its tracking server and UI) becomes ``mlflow-skinny`` at the
  same version: serving needs only the pyfunc loaders, which skinny carries. When the model pins an
  MLflow older than mldeploy's runtime supports, mldeploy's range is used (MLflow loads models
  saved by older versions).
* ``mldeploy`` itself is dropped (it goes in as its own wheel).
* any other clash (e.g. ``pandas==1.5.3`` against mldeploy's ``pandas>=2.0``) is left to pip's
  resolver, whose failure becomes a :class:`~mldeploy.errors.BuildError` naming both sides.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from mldeploy.errors import BuildError, NotAnMlflowModelError

_MLFLOW_NAMES = {"mlflow", "mlflow-skinny"}


@dataclass(frozen=True)
class ModelFacts:
    """What the builder needs to know about a model directory."""

    path: Path
    python_version: str | None  # "3.11.7" as saved, None when the MLmodel does not say
    mlflow_version: str | None
    model_uuid: str | None
    flavors: tuple[str, ...]
    requirement_lines: tuple[str, ...]  # raw lines, includes resolved (-r followed)
    source: str  # which file the requirements came from ("" when none)
    run_id: str | None = None  # the run that logged the model, when it says


@dataclass(frozen=True)
class ResolvedRequirements:
    """Input for the wheelhouse: ``lines`` go into a requirements file for ``pip download``."""

    lines: tuple[str, ...]
    notes: tuple[str, ...]


def read_model(path: Path) -> ModelFacts:
    """Read the MLmodel file and the model's pip requirements from ``path``."""
    import yaml

    mlmodel = path / "MLmodel"
    try:
        meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise NotAnMlflowModelError(
            f"{path} has no MLmodel file", hint="point -m at an MLflow model directory"
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        raise NotAnMlflowModelError(
            f"cannot read {mlmodel}: {type(exc).__name__}", hint="check the model's MLmodel file"
        ) from None
    if not isinstance(meta, dict):
        raise NotAnMlflowModelError(f"{mlmodel} is not a mapping of MLmodel fields",
                                    hint="check the model's MLmodel file")
    flavors = meta.get("flavors") or {}
    if not isinstance(flavors, dict):
        raise NotAnMlflowModelError(f"{mlmodel}: 'flavors' is not a mapping",
                                    hint="check the model's MLmodel file")
    pyfunc = flavors.get("python_function") or {}
    lines, source = _requirement_lines(path, pyfunc)
    python_version = pyfunc.get("python_version")
    env_file = _env_file(path, pyfunc)
    if env_file is not None:
        python_version = (_load_yaml(env_file) or {}).get("python") or python_version
    return ModelFacts(
        path=path,
        python_version=_text(python_version),
        mlflow_version=_text(meta.get("mlflow_version")),
        model_uuid=_text(meta.get("model_uuid")),
        run_id=_text(meta.get("run_id")),
        flavors=tuple(sorted(k for k in flavors if k != "python_function")),
        requirement_lines=tuple(lines),
        source=source,
    )


def _text(value: Any) -> str | None:
    """An MLmodel field as text: YAML makes ``model_uuid: 1234`` an int, ``2.10`` a float."""
    return None if value is None or value == "" else str(value)


def _load_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BuildError(
            f"cannot read {path.name} of the model: {type(exc).__name__}",
            hint="fix or remove the file; it lists the model's Python requirements",
        ) from None


def _env_file(path: Path, pyfunc: dict[str, Any]) -> Path | None:
    env = pyfunc.get("env")
    name = env.get("virtualenv") if isinstance(env, dict) else None
    for candidate in (name, "python_env.yaml"):
        if candidate and (path / candidate).is_file():
            return path / candidate
    return None


def _requirement_lines(path: Path, pyfunc: dict[str, Any]) -> tuple[list[str], str]:
    env_file = _env_file(path, pyfunc)
    if env_file is not None:
        deps = (_load_yaml(env_file) or {}).get("dependencies") or []
        return _expand([str(d) for d in deps], path, path, set()), env_file.name
    if (path / "requirements.txt").is_file():
        return _expand(["-r requirements.txt"], path, path, set()), "requirements.txt"
    conda = pyfunc.get("env", {}).get("conda") if isinstance(pyfunc.get("env"), dict) else None
    conda_file = path / (conda or "conda.yaml")
    if conda_file.is_file():
        for dep in (_load_yaml(conda_file) or {}).get("dependencies") or []:
            if isinstance(dep, dict) and isinstance(dep.get("pip"), list):
                return _expand([str(d) for d in dep["pip"]], path, path, set()), conda_file.name
    return [], ""


def _expand(lines: list[str], base: Path, root: Path, seen: set[Path]) -> list[str]:
    """Strip comments and blanks; inline ``-r FILE`` relative to the model directory."""
    out: list[str] = []
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(("-r ", "--requirement ", "--requirement=")):
            name = line.split("=", 1)[1] if line.startswith("--requirement=") else line.split()[1]
            target = (base / name).resolve()
            if target in seen:
                continue
            if not target.is_file() or root.resolve() not in target.parents:
                raise BuildError(
                    f"the model's requirements include {name!r}, which is not a file in the model",
                    hint="keep requirement files inside the model directory",
                )
            seen.add(target)
            text = target.read_text(encoding="utf-8").splitlines()
            out.extend(_expand(text, target.parent, root, seen))
            continue
        out.append(line)
    return out


def mldeploy_requirements(engine: str) -> list[str]:
    """mldeploy's own runtime requirements (plus the ``mlserver`` extra for that engine)."""
    try:
        requires = importlib.metadata.requires("mldeploy") or []
    except importlib.metadata.PackageNotFoundError:  # running from a bare source tree
        requires = []
    out: list[str] = []
    for text in requires:
        req = Requirement(text)
        if req.marker is None:
            out.append(str(req))
        elif engine == "mlserver" and req.marker.evaluate({"extra": "mlserver"}):
            req.marker = None
            out.append(str(req))
    if not out:
        out = ["mlflow-skinny>=2.16", "pandas>=2.0", "numpy>=1.24", "orjson>=3.9", "flask>=3.0",
               "gunicorn>=22.0,<27", "h11>=0.16", "click>=8.1", "packaging>=23", "pyyaml>=6",
               "prometheus_client>=0.20"]
        if engine == "mlserver":
            out += ["mlserver==1.7.1", "mlserver-mlflow==1.7.1", "uvloop==0.21.0"]
    return out


def resolve(
    facts: ModelFacts | None,
    *,
    engine: str,
    env_manager: str = "virtualenv",
    extra: tuple[str, ...] = (),
) -> ResolvedRequirements:
    """Merge the model's requirements with mldeploy's; see the module docstring for the rules."""
    ours = mldeploy_requirements(engine)
    mlflow_spec = next(
        (Requirement(r).specifier for r in ours if Requirement(r).name == "mlflow-skinny"), None
    )
    notes: list[str] = []
    model_lines: list[str] = []
    lines = list(facts.requirement_lines) if facts else []
    if facts is not None and not lines:
        notes.append("the model lists no requirements: installing mldeploy's runtime only")
    if engine == "mlserver":
        notes.append("engine mlserver: MLServer's MLflow runtime (mlserver-mlflow) depends on the "
                     "full mlflow package, so the image carries it besides mlflow-skinny")
    for line in lines + list(extra):
        if line.startswith("-"):
            if line.startswith(("-e", "--editable")):
                raise BuildError(
                    f"the model requires an editable install ({line})",
                    hint="build a wheel of that package and list it by name and version",
                )
            model_lines.append(line)  # index / find-links / constraint options pass through
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            raise BuildError(
                f"cannot parse the model's requirement {line!r}",
                hint="fix the line in the model's requirements.txt",
            ) from None
        name = canonicalize_name(req.name)
        if name == "mldeploy":
            notes.append(f"dropped {line!r}: mldeploy goes into the image as its own wheel")
            continue
        if name in _MLFLOW_NAMES:
            model_lines.append(_mlflow_line(req, line, mlflow_spec, notes))
            continue
        if env_manager == "local":
            line = _local_pin(req, line, notes)
        model_lines.append(line)
    return ResolvedRequirements(lines=tuple(ours + model_lines), notes=tuple(notes))


def _mlflow_line(req: Requirement, line: str, ours: Any, notes: list[str]) -> str:
    pinned = _exact_pin(req)
    if pinned is not None and ours is not None and not ours.contains(pinned, prereleases=True):
        notes.append(
            f"the model was saved with {req.name} {pinned}; serving it with mlflow-skinny{ours}, "
            "which mldeploy's runtime needs (MLflow loads models saved by older versions)"
        )
        return f"mlflow-skinny{ours}"
    new = f"mlflow-skinny{req.specifier}" + (f"; {req.marker}" if req.marker else "")
    if canonicalize_name(req.name) == "mlflow":
        extras = f" (extras {sorted(req.extras)} dropped)" if req.extras else ""
        notes.append(
            f"{line!r} -> {new!r}: serving needs only MLflow's model loaders, not its tracking "
            f"server and UI{extras}"
        )
    return new


def _exact_pin(req: Requirement) -> Version | None:
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        try:
            return Version(specs[0].version)
        except InvalidVersion:
            return None
    return None


def _local_pin(req: Requirement, line: str, notes: list[str]) -> str:
    try:
        version = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        notes.append(f"{req.name} is not installed locally: keeping {line!r}")
        return line
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    pinned = f"{req.name}{extras}=={version}"
    if pinned != line:
        notes.append(f"{line!r} -> {pinned!r} (env manager local: the installed version)")
    return pinned


def pinned_from_wheels(wheel_names: list[str]) -> tuple[str, ...]:
    """``name==version`` for each wheel file name, sorted by name."""
    from packaging.utils import parse_wheel_filename

    pins = []
    for wheel in wheel_names:
        name, version, _, _ = parse_wheel_filename(wheel)
        pins.append(f"{name}=={version}")
    return tuple(sorted(set(pins)))
