"""Targets by name, through the ``mldeploy.targets`` entry-point group.

A target spec is ``NAME`` or ``NAME:/LOCATION`` (``sagemaker``, ``sagemaker:/us-east-1``); the
location means what the target says (a region for SageMaker, a context for Kubernetes). A plugin
is imported only when its target is asked for; a plugin whose optional dependencies are missing
gives the ``pip install 'mldeploy[EXTRA]'`` command to run.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.metadata as md
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mldeploy.errors import TargetNotFoundError, UsageError
from mldeploy.target import Target

GROUP = "mldeploy.targets"
_SPEC = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_\-]*)(?::/?(?P<location>.*))?$")


@dataclass(frozen=True)
class TargetSpec:
    name: str
    location: str | None = None

    def __str__(self) -> str:
        return f"{self.name}:/{self.location}" if self.location else self.name


def lazy_exports(package: str, names: Iterable[str], needs: Iterable[str] = (),
                 module: str = "target") -> Callable[[str], Any]:
    """A plugin package's module ``__getattr__``: ``names`` come from ``package.module`` on
    first use, after checking that the modules the target's extra installs (``needs``) are
    there (an ImportError naming the missing one, which the registry turns into the extra's
    ``pip install``). Importing the package itself imports nothing else::

        NEEDS = ("boto3", "botocore")
        __all__ = ["SageMakerTarget"]
        __getattr__ = lazy_exports(__name__, __all__, NEEDS)
    """
    exported, required = frozenset(names), tuple(needs)
    target = package.rsplit(".", 1)[-1]

    def __getattr__(name: str) -> Any:
        if name not in exported:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib
        import importlib.util

        for dep in required:
            if importlib.util.find_spec(dep) is None:
                raise ImportError(f"the {target} target needs {dep}", name=dep)
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__


def parse_target_spec(spec: str) -> TargetSpec:
    m = _SPEC.match(spec.strip()) if isinstance(spec, str) else None
    if not m:
        raise UsageError(
            f"cannot read target {spec!r}",
            hint="write it as NAME or NAME:/LOCATION, e.g. sagemaker or sagemaker:/us-east-1",
        )
    location = (m.group("location") or "").strip("/") or None
    return TargetSpec(m.group("name").lower(), location)


class Registry:
    """Entry points of the ``mldeploy.targets`` group (or ones handed in, for tests)."""

    def __init__(self, entry_points: Iterable[md.EntryPoint] | None = None) -> None:
        self._given = list(entry_points) if entry_points is not None else None

    def entry_points(self) -> dict[str, md.EntryPoint]:
        eps = self._given if self._given is not None else md.entry_points(group=GROUP)
        return {ep.name: ep for ep in eps}

    def names(self) -> list[str]:
        return sorted(self.entry_points())

    def target_class(self, name: str) -> type[Target]:
        eps = self.entry_points()
        ep = eps.get(name)
        if ep is None:
            import difflib

            near = difflib.get_close_matches(name, list(eps), n=1)
            known = ", ".join(sorted(eps)) or "none installed"
            raise TargetNotFoundError(
                f"no deployment target named {name!r}"
                + (f" (did you mean {near[0]!r}?)" if near else ""),
                hint=f"known targets: {known}",
            )
        try:
            obj = ep.load()
        except ImportError as exc:
            missing = exc.name or "a dependency"
            raise TargetNotFoundError(
                f"the {name} target needs {missing}, which is not installed",
                hint=f"pip install {_install_spec(ep, name)}",
            ) from None
        if not (isinstance(obj, type) and issubclass(obj, Target)):
            raise TargetNotFoundError(
                f"the entry point for target {name!r} ({ep.value}) is not a mldeploy Target",
                hint="report this to the plugin's authors",
            )
        return obj

    def get(self, spec: str | TargetSpec, config: Any = None, **kwargs: Any) -> Target:
        """Build the target for ``spec`` with ``config`` (mapping or typed config) and the
        keyword arguments of :class:`~mldeploy.target.Target` (``clients``, ``progress``)."""
        if not isinstance(spec, TargetSpec):
            spec = parse_target_spec(spec)
        cls = self.target_class(spec.name)
        return cls(config, location=spec.location, **kwargs)


@dataclass(frozen=True)
class TargetInfo:
    """What ``mldeploy targets`` shows of one registered target: whether it can be used here
    (``installed``; else ``problem`` says why and ``install`` what to run), the extra it comes
    with, and the ``capabilities`` the target class declares (empty when it declares none)."""

    name: str
    installed: bool
    install: str
    extra: str | None = None
    summary: str = ""
    capabilities: tuple[str, ...] = ()
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "installed": self.installed, "extra": self.extra,
                "install": self.install, "summary": self.summary,
                "capabilities": list(self.capabilities), "problem": self.problem}


def capabilities_of(cls: type) -> tuple[str, ...]:
    """The capabilities a target class declares as data (a ``capabilities`` collection of
    strings or enum members), sorted; () when it declares none."""
    declared = getattr(cls, "capabilities", None)
    if declared is None or isinstance(declared, (str, bytes)) or callable(declared):
        return ()
    if dataclasses.is_dataclass(declared):  # flags as fields: the ones set
        declared = {f.name: getattr(declared, f.name) for f in dataclasses.fields(declared)}
    if isinstance(declared, Mapping):
        declared = [key for key, on in declared.items() if on]
    try:
        items = list(declared)
    except TypeError:
        return ()
    return tuple(sorted({_capability_name(item) for item in items}))


def _capability_name(item: Any) -> str:
    if isinstance(item, enum.Enum):
        value = item.value
        return value if isinstance(value, str) else str(item.name).lower()
    return str(item)


def describe_targets(registry: Registry | None = None) -> list[TargetInfo]:
    """Every target registered under the entry-point group, loaded to see whether its extra is
    installed and what it declares."""
    registry = registry or Registry()
    out = []
    for name, ep in sorted(registry.entry_points().items()):
        install = _install_spec(ep, name)
        extra = install.split("[", 1)[1].rstrip("]'") if "[" in install else None
        try:
            cls = registry.target_class(name)
        except TargetNotFoundError as exc:
            out.append(TargetInfo(name, False, f"pip install {install}", extra,
                                  problem=exc.message))
            continue
        doc = (cls.__doc__ or "").strip().splitlines()
        out.append(TargetInfo(name, True, f"pip install {install}", extra,
                              summary=doc[0] if doc else "", capabilities=capabilities_of(cls)))
    return out


def _install_spec(ep: md.EntryPoint, name: str) -> str:
    """``'mldeploy[name]'`` when the distribution declares that extra, else the distribution."""
    dist = getattr(ep, "dist", None)
    dist_name = dist.metadata["Name"] if dist is not None else "mldeploy"
    extras = set(dist.metadata.get_all("Provides-Extra") or []) if dist is not None else {name}
    return f"'{dist_name}[{name}]'" if name in extras else dist_name


def available_targets(registry: Registry | None = None) -> list[str]:
    return (registry or Registry()).names()


def get_target_class(name: str, registry: Registry | None = None) -> type[Target]:
    return (registry or Registry()).target_class(parse_target_spec(name).name)


def get_target(
    spec: str | TargetSpec, config: Any = None, *, registry: Registry | None = None, **kwargs: Any
) -> Target:
    return (registry or Registry()).get(spec, config, **kwargs)


TargetFactory = Callable[..., Target]

__all__ = [
    "GROUP",
    "Registry",
    "TargetInfo",
    "TargetSpec",
    "available_targets",
    "capabilities_of",
    "describe_targets",
    "get_target",
    "get_target_class",
    "parse_target_spec",
]
