"""The target interface every deployment target implements, and the typed results it returns.

A target is a class registered under the ``mldeploy.targets`` entry-point group. It is built with
its typed config (a dataclass, see :mod:`mldeploy.config`), an optional location from the target
spec (``sagemaker:/us-east-1`` -> ``"us-east-1"``), optional SDK clients (so tests can hand in
emulator-backed ones) and an optional progress callback. Building one does no I/O.

Verbs (all take the deployment ``name``; nothing is printed, progress goes to the callback):

==============  ==================================================================================
``create``      new deployment; :class:`~mldeploy.errors.DeploymentExistsError` if it exists
``replace``     swap the model of an existing deployment without downtime; on failure the old one
                keeps serving and everything this run created is removed again
``add``         add a model beside the existing one(s) with an initial traffic weight
``delete``      idempotent: deleting what is not there returns a result with ``existed=False``
``get``         :class:`Deployment`; :class:`~mldeploy.errors.DeploymentNotFoundError` if absent
``list``        every deployment this target manages
``invoke``      send data, get a :class:`Prediction` (the same type on every target)
``traffic``     set the weights between a deployment's variants
``plan``        the dry run of create/replace/add: a :class:`Plan`, no changes made
==============  ==================================================================================
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mldeploy.errors import UsageError


class DeployMode(str, enum.Enum):
    CREATE = "create"
    REPLACE = "replace"
    ADD = "add"

    @classmethod
    def parse(cls, value: DeployMode | str) -> DeployMode:
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise UsageError(
                f"unknown deploy mode {value!r}",
                hint=f"use one of {', '.join(m.value for m in cls)}",
            ) from None


class Status(str, enum.Enum):
    """A deployment's state, the same words on every target."""

    CREATING = "creating"
    UPDATING = "updating"
    READY = "ready"
    FAILED = "failed"
    DELETING = "deleting"
    OUT_OF_SERVICE = "out_of_service"
    UNKNOWN = "unknown"

    @property
    def settled(self) -> bool:
        return self in (Status.READY, Status.FAILED, Status.OUT_OF_SERVICE)


@dataclass(frozen=True)
class Resource:
    """One thing a target created: ``kind`` (``"endpoint"``, ``"model"``, ``"s3-object"``, ...)
    and ``id`` (an ARN, URI or name the user can look up or remove by hand)."""

    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


@dataclass(frozen=True)
class Variant:
    """One model behind a deployment, with its share of the traffic."""

    name: str
    weight: float = 1.0
    model_uri: str | None = None
    instance_count: int | None = None


@dataclass(frozen=True)
class Deployment:
    name: str
    target: str
    status: Status
    url: str | None = None
    model_uri: str | None = None
    resources: tuple[Resource, ...] = ()
    variants: tuple[Variant, ...] = ()
    failure_reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class Deletion:
    """The result of ``delete``: what was removed, and anything that could not be."""

    name: str
    target: str
    existed: bool
    removed: tuple[Resource, ...] = ()
    leftover: tuple[Resource, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


@dataclass(frozen=True)
class Prediction:
    """What a deployed model answered: ``predictions`` (decoded from ``{"predictions": ...}`` or a
    bare JSON value), the ``raw`` bytes and their ``content_type``."""

    predictions: Any
    raw: bytes = b""
    content_type: str = "application/json"
    variant: str | None = None

    @classmethod
    def from_response(
        cls, body: bytes, content_type: str | None = None, *, variant: str | None = None
    ) -> Prediction:
        ctype = (content_type or "application/json").split(";")[0].strip().lower()
        predictions: Any = None
        if ctype.endswith("json") or ctype == "":
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = body.decode("utf-8", "replace")
            if isinstance(decoded, dict) and "predictions" in decoded:
                predictions = decoded["predictions"]
            else:
                predictions = decoded
        elif ctype.startswith("text/"):
            text = body.decode("utf-8", "replace")
            predictions = [line for line in text.splitlines() if line]
        else:
            predictions = body
        return cls(predictions=predictions, raw=body, content_type=ctype, variant=variant)

    def to_dict(self) -> dict[str, Any]:
        preds = self.predictions
        if isinstance(preds, bytes):
            preds = preds.decode("utf-8", "replace")
        return {"predictions": preds, "content_type": self.content_type, "variant": self.variant}


class Action(str, enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    KEEP = "keep"


@dataclass(frozen=True)
class Change:
    action: Action
    resource: Resource
    detail: str = ""

    def __str__(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-", "keep": "="}[self.action.value]
        return f"{sign} {self.resource}" + (f"  ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class Plan:
    """A dry run: the resources that would be created, changed and removed."""

    target: str
    name: str
    mode: DeployMode
    changes: tuple[Change, ...] = ()
    # Targets that apply declarative objects (Kubernetes) put them here, in wire form, so a dry
    # run can be committed to a GitOps repository instead of applied (``to_yaml``).
    manifests: tuple[dict[str, Any], ...] = ()

    def by_action(self, action: Action) -> list[Resource]:
        return [c.resource for c in self.changes if c.action is action]

    def to_yaml(self) -> str:
        """The manifests as a multi-document YAML stream (empty when the target has none)."""
        import yaml

        return yaml.safe_dump_all(list(self.manifests), sort_keys=False) if self.manifests else ""

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    def __str__(self) -> str:
        head = f"{self.mode.value} {self.name} on {self.target} would:"
        return "\n".join([head, *(f"  {c}" for c in self.changes)] or [head])


@dataclass(frozen=True)
class ProgressEvent:
    """Sent to the progress callback: a status transition or a step, with the elapsed time."""

    message: str
    status: Status | None = None
    elapsed: float = 0.0

    def __str__(self) -> str:
        return f"[{self.elapsed:6.1f}s] {self.message}"


Progress = Callable[[ProgressEvent], None]


class Target(abc.ABC):
    """Base class of every target. Subclasses set ``name`` and ``config_class`` and implement the
    abstract verbs; they raise only :mod:`mldeploy.errors` exceptions (SDK errors are translated
    inside the plugin)."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    def __init__(
        self,
        config: Any = None,
        *,
        location: str | None = None,
        clients: Any = None,
        progress: Progress | None = None,
    ) -> None:
        from mldeploy.config import build_config

        self.config = build_config(self.config_class, config)
        self.location = location or None
        self.clients = clients
        self._progress = progress
        self._started = time.monotonic()

    # -- the verbs ------------------------------------------------------------------------------

    @abc.abstractmethod
    def create(
        self, name: str, model_uri: str, *, wait: bool = True, timeout: float | None = None
    ) -> Deployment: ...

    @abc.abstractmethod
    def replace(
        self, name: str, model_uri: str, *, wait: bool = True, timeout: float | None = None
    ) -> Deployment: ...

    def add(
        self, name: str, model_uri: str, *, wait: bool = True, timeout: float | None = None
    ) -> Deployment:
        raise UsageError(f"the {self.name} target cannot add a model beside another one")

    @abc.abstractmethod
    def delete(self, name: str, *, wait: bool = True, timeout: float | None = None) -> Deletion: ...

    @abc.abstractmethod
    def get(self, name: str) -> Deployment: ...

    @abc.abstractmethod
    def list(self) -> list[Deployment]: ...

    @abc.abstractmethod
    def invoke(
        self,
        name: str,
        data: Any,
        *,
        content_type: str | None = None,
        variant: str | None = None,
    ) -> Prediction: ...

    def traffic(
        self,
        name: str,
        weights: Mapping[str, float],
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> Deployment:
        raise UsageError(f"the {self.name} target has no traffic weights to set")

    @abc.abstractmethod
    def plan(self, mode: DeployMode, name: str, model_uri: str) -> Plan: ...

    # -- the one entry point the API uses -----------------------------------------------------

    def deploy(
        self,
        mode: DeployMode | str,
        name: str,
        model_uri: str,
        *,
        dry_run: bool = False,
        wait: bool = True,
        timeout: float | None = None,
    ) -> Deployment | Plan:
        mode = DeployMode.parse(mode)
        if dry_run:
            return self.plan(mode, name, model_uri)
        verb = {DeployMode.CREATE: self.create, DeployMode.REPLACE: self.replace,
                DeployMode.ADD: self.add}[mode]
        return verb(name, model_uri, wait=wait, timeout=timeout)

    # -- helpers for subclasses -----------------------------------------------------------------

    def progress(self, message: str, status: Status | None = None) -> None:
        if self._progress is not None:
            self._progress(ProgressEvent(message, status, time.monotonic() - self._started))

    def restart_clock(self) -> None:
        self._started = time.monotonic()

    def __repr__(self) -> str:
        loc = f":/{self.location}" if self.location else ""
        return f"<{type(self).__name__} {self.name}{loc}>"


def encode_payload(data: Any, content_type: str | None = None) -> tuple[bytes, str]:
    """Serialise invoke data the same way for every target: bytes and str pass through;
    a pandas DataFrame becomes ``{"dataframe_split": ...}``; a numpy array ``{"inputs": ...}``;
    other JSON-able values are sent as JSON."""
    if isinstance(data, bytes):
        return data, content_type or "application/json"
    if isinstance(data, str):
        return data.encode("utf-8"), content_type or "application/json"
    if content_type and not content_type.endswith("json"):
        raise UsageError(
            f"cannot send {type(data).__name__} as {content_type}",
            hint="pass bytes or str for non-JSON content types",
        )
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            split = json.loads(data.to_json(orient="split", index=False))
            return json.dumps({"dataframe_split": split}).encode(), "application/json"
    except ImportError:  # pragma: no cover - pandas is a core dependency
        pass
    if hasattr(data, "tolist") and hasattr(data, "shape"):
        data = {"inputs": data.tolist()}
    try:
        return json.dumps(data).encode("utf-8"), "application/json"
    except (TypeError, ValueError):
        raise UsageError(
            f"cannot send a {type(data).__name__} as JSON",
            hint="pass a DataFrame, a dict/list, a numpy array, or bytes with a content type",
        ) from None


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


__all__ = [
    "Action",
    "Change",
    "Deletion",
    "DeployMode",
    "Deployment",
    "Plan",
    "Prediction",
    "Progress",
    "ProgressEvent",
    "Resource",
    "Status",
    "Target",
    "Variant",
    "encode_payload",
]
