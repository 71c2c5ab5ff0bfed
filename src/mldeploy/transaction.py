"""One transaction for every target's ``create`` / ``replace`` / ``add``.

The core opens a :class:`Transaction` for each of those verbs and hands it to the plugin's hook.
The plugin records each thing it creates or changes, *as it does it*, with the function that
undoes it (MLflow's ``_SageMakerOperation`` pairs each step with its undo the same way)::

    arn = sm.create_model(...)["ModelArn"]
    tx.record(Resource("model", arn), lambda: remove_model(arn))

If the hook raises - an SDK error, a failed rollout (:class:`StepFailed`), a timeout
(:class:`StepTimedOut` or any ``TimeoutError``) or Ctrl-C (``KeyboardInterrupt``) - the core
undoes the records newest first and raises the same error on every target:
:class:`~mldeploy.errors.DeploymentTimeoutError` for a timeout, else
:class:`~mldeploy.errors.DeploymentFailedError`, with ``cleaned`` (what was undone) and
``leftover`` (what could not be, or was kept on purpose) as :class:`~mldeploy.target.Resource`
lists. A :class:`~mldeploy.errors.MldeployError` raised before anything was recorded (a bad
name, an existing deployment, a model URI that does not resolve) passes through unchanged, and
so does a :class:`~mldeploy.errors.UsageError` the backend raised later (input it refused)
once everything is undone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mldeploy.errors import (
    DeploymentFailedError,
    DeploymentTimeoutError,
    MldeployError,
    UsageError,
)
from mldeploy.target import Resource

Undo = Callable[[], Any]


class StepFailed(Exception):
    """The backend reported a step as failed (rolled back, never healthy, ...). ``reason`` goes
    into the error message as it is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StepTimedOut(TimeoutError):
    """A wait ran out of time; the message says while what (``"while the endpoint was
    Creating"``, ``"after 60 s (2 of 3 pods ready)"``) and follows ``"<verb> of <name> timed
    out "``."""


@dataclass
class Record:
    """One thing a run created or changed: ``undo`` removes it or puts it back; ``kept``: it
    must not be undone (it is in use) and is reported as left over."""

    resource: Resource
    undo: Undo
    kept: bool = False


class Transaction:
    """What one run did, undone in reverse on failure. Built by the core (see the module doc);
    ``wait`` and ``timeout`` are the run's (the timeout already defaulted from the config)."""

    def __init__(self, target: str, verb: str, name: str, *, wait: bool = True,
                 timeout: float = 0.0, existed: bool = False,
                 say: Callable[[str], None] | None = None) -> None:
        self.target, self.verb, self.name = target, verb, name
        self.wait, self.timeout = wait, timeout
        self.deadline = time.monotonic() + timeout if timeout else None
        self.existed = existed  # was something serving before (it still is after a rollback)
        self.hint: str | None = None  # a plugin's own "what to do next", used on failure
        self.detail: str = ""  # appended to the failure message (e.g. the last log lines)
        self.records: list[Record] = []
        self._say = say or (lambda _m: None)
        self._on_failure: list[Callable[[BaseException], None]] = []

    # -- used by plugins -------------------------------------------------------------------------

    def record(self, resource: Resource, undo: Undo) -> Resource:
        """Record ``resource`` as created or changed by this run; ``undo`` reverts it."""
        self.records.append(Record(resource, undo))
        return resource

    def forget(self, resource: Resource) -> None:
        """Drop the record of ``resource`` (it was removed again by the step that made it)."""
        self.records = [r for r in self.records if r.resource != resource]

    def keep(self, predicate: Callable[[Resource], bool]) -> None:
        """Mark the records ``predicate`` picks as not to be undone (reported as left over)."""
        for r in self.records:
            if predicate(r.resource):
                r.kept = True

    def on_failure(self, callback: Callable[[BaseException], None]) -> None:
        """Run ``callback(exc)`` before the rollback (to :meth:`keep` records, set
        :attr:`hint` or :attr:`detail`); its own errors are ignored."""
        self._on_failure.append(callback)

    def remaining(self) -> float:
        """Seconds left until the run's timeout (the whole timeout when there is none)."""
        if self.deadline is None:
            return self.timeout
        return max(self.deadline - time.monotonic(), 0.0)

    @property
    def resources(self) -> list[Resource]:
        return [r.resource for r in self.records]

    # -- used by the core ------------------------------------------------------------------------

    def rollback(self) -> tuple[list[Resource], list[Resource]]:
        """Undo every record, newest first: ``(cleaned, leftover)``. Each undo runs even when an
        earlier one failed."""
        cleaned: list[Resource] = []
        leftover: list[Resource] = []
        for r in reversed(self.records):
            if r.kept:
                leftover.append(r.resource)
                continue
            try:
                r.undo()
            except Exception as exc:  # noqa: BLE001 - reported, and the rest still go
                self._say(f"could not undo {r.resource}: {getattr(exc, 'message', exc)}")
                leftover.append(r.resource)
            else:
                cleaned.append(r.resource)
        self.records = []
        return cleaned, leftover

    def failure(self, exc: BaseException) -> BaseException:
        """Roll back and return the error to raise in place of ``exc`` (module doc)."""
        recorded = bool(self.records)
        for callback in self._on_failure:
            try:
                callback(exc)
            except Exception:  # noqa: BLE001 - courtesy work must not hide the real error
                pass
        cleaned, leftover = self.rollback()
        if isinstance(exc, DeploymentFailedError):  # a plugin's own, after its own undo
            exc.cleaned = [*exc.cleaned, *cleaned]
            exc.leftover = [*exc.leftover, *leftover]
            if leftover:
                exc.hint = _with_leftover(exc.hint or self._default_hint(), leftover)
            return exc
        if isinstance(exc, MldeployError) and not recorded:
            return exc  # nothing was made: the error as it is
        if isinstance(exc, UsageError) and not leftover:
            return exc  # bad input the backend refused; all undone: fixing the input fixes it
        if not isinstance(exc, (Exception, KeyboardInterrupt)):
            return exc  # SystemExit, GeneratorExit: after the rollback, as they are
        head = f"{self.verb} of {self.name}"
        if isinstance(exc, TimeoutError):
            text = str(exc) or f"after {self.timeout:g} s"
            message = f"{head} timed out {text}"
        elif isinstance(exc, KeyboardInterrupt):
            message = f"{head} was interrupted"
        elif isinstance(exc, StepFailed):
            message = f"{head} failed: {exc.reason}"
        elif isinstance(exc, MldeployError):
            message = f"{head} failed: {exc.message}"
        else:
            message = f"{head} failed: unexpected {type(exc).__name__}: {exc}"
        message += self.detail
        hint = self.hint or self._default_hint()
        if leftover:
            hint = _with_leftover(hint, leftover)
        cls = DeploymentTimeoutError if isinstance(exc, TimeoutError) else DeploymentFailedError
        return cls(message, hint=hint, cleaned=cleaned, leftover=leftover,  # type: ignore[arg-type]
                   cause=exc if isinstance(exc, MldeployError) else None)

    def _default_hint(self) -> str:
        if self.existed:
            return f"{self.name} keeps serving its previous model"
        return "nothing is left running"


def _with_leftover(hint: str, leftover: list[Resource]) -> str:
    return f"{hint}; remove by hand: {', '.join(map(str, leftover))}"


__all__ = ["Record", "StepFailed", "StepTimedOut", "Transaction", "Undo"]
