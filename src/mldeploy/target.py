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
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from mldeploy.errors import MldeployError, UsageError

if TYPE_CHECKING:
    from mldeploy.transaction import Transaction

R = TypeVar("R")


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
class Transform:
    """The result of ``transform``: a batch job over stored data, how it ended, where its
    output is, and what the run created and removed again."""

    name: str
    target: str
    status: Status  # READY: the job completed
    input: str
    output: str
    outputs: tuple[str, ...] = ()  # the output objects the job wrote
    failure_reason: str | None = None
    removed: tuple[Resource, ...] = ()  # created for the job and removed after it
    leftover: tuple[Resource, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

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


class Capability(str, enum.Enum):
    """What a target can do beyond create / replace / delete / get / list / invoke / plan,
    declared as data (``Target.capabilities``) and enforced by the core before a hook runs."""

    ADD = "add"  # a second model beside the first (--mode add)
    TRAFFIC = "traffic"  # weights between variants
    NO_WAIT = "no-wait"  # return before the change is ready (--no-wait)
    VARIANT_INVOKE = "variant-invoke"  # invoke one variant by name
    TRANSFORM = "transform"  # batch jobs over stored data (SageMaker Batch Transform)


@dataclass(frozen=True)
class NameRule:
    """Which deployment names a target accepts: a full-match ``pattern`` and a length limit;
    ``hint`` tells the user what is allowed. Checked by the core, the same error everywhere."""

    pattern: str = r"[a-zA-Z0-9](-*[a-zA-Z0-9])*"
    max_length: int = 63
    hint: str = "use 1-63 letters, digits and hyphens, starting and ending with a letter or digit"
    what: str = "deployment name"  # in the message: "'x_y' is not a valid <what>"

    def check(self, target: str, name: Any) -> str:
        import re

        if not isinstance(name, str) or not name.strip():
            raise UsageError("no deployment name given", hint="pass name=... (--name on the CLI)")
        name = name.strip()
        if len(name) > self.max_length or not re.fullmatch(self.pattern, name):
            raise UsageError(f"{name!r} is not a valid {self.what}", hint=self.hint)
        return name


class Target(abc.ABC):
    """Base class of every target. The public verbs are template methods: the core checks the
    name (``name_rule``), enforces ``capabilities``, restarts the progress clock, applies the
    timeout (``timeout_setting``: the config field that gives the default), encodes invoke data
    and runs create / replace / add as one :class:`~mldeploy.transaction.Transaction` - then
    calls the plugin's hook (``_create``, ``_replace``, ``_add``, ``_delete``, ``_get``,
    ``_list``, ``_invoke``, ``_traffic``, ``_plan``), which does the backend steps only.
    Hooks raise only :mod:`mldeploy.errors` exceptions (SDK errors are translated inside the
    plugin) or, inside a transaction, :class:`~mldeploy.transaction.StepFailed` /
    ``TimeoutError``."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    name_rule: ClassVar[NameRule] = NameRule()
    timeout_setting: ClassVar[str | None] = "timeout_seconds"

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

    # -- the verbs (template methods) -----------------------------------------------------------

    def create(
        self, name: str, model_uri: str, *, wait: bool = True, timeout: float | None = None
    ) -> Deployment:
        return self._transaction(DeployMode.CREATE, name, model_uri, wait, timeout)

    def replace(
        self, name: str, model_uri: str, *, wait: bool = True, timeout: float | None = None
    ) -> Deployment:
        return self._transaction(DeployMode.REPLACE, name, model_uri, wait, timeout)

    def add(
        self, name: str, model_uri: str, *, wait: bool = True, timeout: float | None = None
    ) -> Deployment:
        return self._transaction(DeployMode.ADD, name, model_uri, wait, timeout)

    def delete(self, name: str, *, wait: bool = True, timeout: float | None = None) -> Deletion:
        name = self.check_name(name)
        self.restart_clock()
        return self._delete(name, wait=self._effective_wait(wait),
                            timeout=self._effective_timeout(timeout))

    def get(self, name: str) -> Deployment:
        return self._get(self.check_name(name))

    def list(self) -> list[Deployment]:
        return self._list()

    def invoke(
        self,
        name: str,
        data: Any,
        *,
        content_type: str | None = None,
        variant: str | None = None,
    ) -> Prediction:
        name = self.check_name(name)
        if variant is not None:
            self.require(Capability.VARIANT_INVOKE, f"cannot invoke one variant of {name!r}")
        body, ctype = encode_payload(data, content_type)
        return self._invoke(name, body, ctype, variant)

    def traffic(
        self,
        name: str,
        weights: Mapping[str, float],
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> Deployment:
        name = self.check_name(name)
        self.require(Capability.TRAFFIC, "has no traffic weights to set")
        self.restart_clock()
        return self._traffic(name, dict(weights), wait=self._effective_wait(wait),
                             timeout=self._effective_timeout(timeout))

    def plan(self, mode: DeployMode | str, name: str, model_uri: str) -> Plan:
        mode = DeployMode.parse(mode)
        name = self.check_name(name)
        if mode is DeployMode.ADD:
            self.require(Capability.ADD, "cannot add a model beside another one")
        return self._plan(mode, name, model_uri)

    def transform(self, name: str, model_uri: str, job: Mapping[str, Any] | Any, *,
                  wait: bool = True, timeout: float | None = None) -> Transform:
        """Score stored data with ``model_uri`` as a batch job named ``name`` (``job``: the
        target's job settings, e.g. input and output locations), in one transaction: what the
        run creates is removed again when it fails."""
        from mldeploy.transaction import Transaction

        name = self.check_name(name)
        self.require(Capability.TRANSFORM, "has no batch jobs")
        if not isinstance(model_uri, str) or not model_uri.strip():
            raise UsageError("no model URI given", hint="pass model_uri=... (-m on the CLI)")
        tx = Transaction(self.name, "transform", name, wait=self._effective_wait(wait),
                         timeout=self._effective_timeout(timeout), say=self.progress)
        self.restart_clock()
        return self._in_transaction(tx, self._transform, model_uri.strip(), job)

    # -- the hooks a plugin implements ----------------------------------------------------------

    @abc.abstractmethod
    def _create(self, tx: Transaction, model_uri: str) -> Deployment: ...

    @abc.abstractmethod
    def _replace(self, tx: Transaction, model_uri: str) -> Deployment: ...

    def _add(self, tx: Transaction, model_uri: str) -> Deployment:  # with Capability.ADD
        raise NotImplementedError

    @abc.abstractmethod
    def _delete(self, name: str, *, wait: bool, timeout: float) -> Deletion: ...

    @abc.abstractmethod
    def _get(self, name: str) -> Deployment: ...

    @abc.abstractmethod
    def _list(self) -> list[Deployment]: ...

    @abc.abstractmethod
    def _invoke(self, name: str, body: bytes, content_type: str,
                variant: str | None) -> Prediction: ...

    def _traffic(self, name: str, weights: dict[str, float], *, wait: bool,
                 timeout: float) -> Deployment:  # with Capability.TRAFFIC
        raise NotImplementedError

    @abc.abstractmethod
    def _plan(self, mode: DeployMode, name: str, model_uri: str) -> Plan: ...

    def _transform(self, tx: Transaction, model_uri: str,
                   job: Any) -> Transform:  # with Capability.TRANSFORM
        raise NotImplementedError

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

    # -- what the core does around every hook ---------------------------------------------------

    def check_name(self, name: Any) -> str:
        """The deployment name, checked against ``name_rule`` (UsageError if it breaks it)."""
        return self.name_rule.check(self.name, name)

    def require(self, capability: Capability, what: str) -> None:
        if capability not in self.capabilities:
            raise UsageError(f"the {self.name} target {what}",
                             hint=f"the {self.name} target's capabilities: "
                             + (", ".join(sorted(c.value for c in self.capabilities)) or "none"))

    def _effective_wait(self, wait: bool) -> bool:
        if not wait and Capability.NO_WAIT not in self.capabilities:
            self.progress(f"the {self.name} target always waits until the change is ready")
            return True
        return wait

    def _effective_timeout(self, timeout: float | None) -> float:
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
                raise UsageError(f"timeout must be a positive number of seconds, not {timeout!r}")
            return float(timeout)
        default = getattr(self.config, self.timeout_setting or "", None)
        return float(default) if isinstance(default, (int, float)) else 0.0

    def _transaction(self, mode: DeployMode, name: str, model_uri: str, wait: bool,
                     timeout: float | None) -> Deployment:
        from mldeploy.transaction import Transaction

        name = self.check_name(name)
        if mode is DeployMode.ADD:
            self.require(Capability.ADD, "cannot add a model beside another one")
        if not isinstance(model_uri, str) or not model_uri.strip():
            raise UsageError("no model URI given", hint="pass model_uri=... (-m on the CLI)")
        tx = Transaction(self.name, mode.value, name, wait=self._effective_wait(wait),
                         timeout=self._effective_timeout(timeout),
                         existed=mode is not DeployMode.CREATE, say=self.progress)
        self.restart_clock()
        hook = {DeployMode.CREATE: self._create, DeployMode.REPLACE: self._replace,
                DeployMode.ADD: self._add}[mode]
        return self._in_transaction(tx, hook, model_uri.strip())

    @staticmethod
    def _in_transaction(tx: Transaction, hook: Callable[..., R], *args: Any) -> R:
        """``hook(tx, *args)``; on any failure the transaction is rolled back and its error
        raised in place of the hook's."""
        try:
            return hook(tx, *args)
        except BaseException as exc:
            err = tx.failure(exc)
            if err is exc:
                raise
            raise err from (None if isinstance(exc, (MldeployError, KeyboardInterrupt))
                            else exc)

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
    "Capability",
    "Change",
    "Deletion",
    "DeployMode",
    "Deployment",
    "NameRule",
    "Plan",
    "Prediction",
    "Progress",
    "ProgressEvent",
    "Resource",
    "Status",
    "Target",
    "Transform",
    "Variant",
    "encode_payload",
]
