"""Endpoint state on disk: one JSON file per endpoint, written atomically, under a lock.

The CLI process is the only writer (under :meth:`StateStore.lock`, an ``flock`` per endpoint);
the gateway process reads the same file when it starts and on every reload, so the file is the
one source of truth for what an endpoint is made of. Files in the state directory::

    NAME.json          the endpoint (see :class:`EndpointState`)
    NAME.lock          the lock file (held while a deploy/traffic/delete runs)
    NAME.gateway.log   the gateway process's log
    logs/NAME/         the whole logs of containers that failed to start (they are removed)
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mldeploy.errors import TargetError

STATE_VERSION = 1


@dataclass(frozen=True)
class VariantState:
    """One variant: a container of ``image`` listening on 127.0.0.1:``port``."""

    name: str
    model_uri: str
    image: str
    container: str  # the container's name (mldeploy-local-...)
    port: int
    weight: float = 1.0
    image_id: str = ""
    created: float = 0.0


@dataclass(frozen=True)
class EndpointState:
    name: str
    host: str = "127.0.0.1"
    port: int = 0  # the gateway's; 0 until the gateway has bound one
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    gateway_pid: int = 0
    generation: int = 0
    upstream_timeout: float = 70.0
    created: float = field(default_factory=time.time)
    variants: tuple[VariantState, ...] = ()
    limits: dict[str, Any] = field(default_factory=dict)  # memory, cpus, workers
    build: dict[str, Any] = field(default_factory=dict)  # the image's build options (effective)

    @property
    def client_host(self) -> str:
        """The address a client on this machine connects to (a wildcard bind -> loopback)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host

    @property
    def url(self) -> str | None:
        if not self.port:
            return None
        host = self.client_host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def variant(self, name: str) -> VariantState | None:
        return next((v for v in self.variants if v.name == name), None)

    def primary(self) -> VariantState | None:
        """The variant with the most weight (the first of equals)."""
        if not self.variants:
            return None
        return max(self.variants, key=lambda v: v.weight)

    def to_json(self) -> str:
        return json.dumps({"version": STATE_VERSION, **dataclasses.asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "state") -> EndpointState:
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
                raise ValueError(f"unknown state version {data.get('version')!r}"
                                 if isinstance(data, dict) else "not a JSON object")
            data.pop("version")
            variants = tuple(_build(VariantState, v) for v in data.pop("variants", []))
            return _build(cls, {**data, "variants": variants})
        except (ValueError, TypeError, KeyError) as exc:
            raise TargetError(f"cannot read {source}: {exc}",
                              hint="delete the endpoint (mldeploy delete --target local) to "
                                   "clean it up") from None


def _build(cls: Any, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__} is not a JSON object")
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


class StateStore:
    """The state directory: load, save (atomic), list, remove, lock."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def log_path(self, name: str) -> Path:
        return self.dir / f"{name}.gateway.log"

    def log_dir(self, name: str) -> Path:
        """Where the logs of containers that failed to start are kept (removed by delete)."""
        return self.dir / "logs" / name

    def _ensure(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise TargetError(f"cannot create the state directory {self.dir}: {exc.strerror}",
                              hint="set -C state_dir=... or MLDEPLOY_LOCAL_STATE_DIR") from None

    def load(self, name: str) -> EndpointState | None:
        path = self.path(name)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TargetError(f"cannot read {path}: {exc.strerror}") from None
        return EndpointState.from_json(text, str(path))

    def save(self, state: EndpointState) -> None:
        """Write the state atomically (temp file + rename; the token makes it 0600)."""
        self._ensure()
        fd, tmp = tempfile.mkstemp(prefix=f".{state.name}.", suffix=".tmp", dir=self.dir)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(state.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path(state.name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def remove(self, name: str) -> bool:
        existed = False
        for path in (self.path(name), self.log_path(name)):
            try:
                path.unlink()
                existed = existed or path.suffix == ".json"
            except FileNotFoundError:
                pass
        shutil.rmtree(self.log_dir(name), ignore_errors=True)
        return existed

    def names(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.stem for p in self.dir.glob("*.json") if not p.name.startswith("."))

    @contextlib.contextmanager
    def lock(self, name: str, timeout: float = 600.0) -> Iterator[None]:
        """Hold ``NAME.lock`` exclusively (another deploy of the same endpoint waits)."""
        self._ensure()
        fd = os.open(self.dir / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() > deadline:
                        raise TargetError(f"endpoint {name!r} is busy with another operation",
                                          hint="wait for it to finish and re-run") from None
                    time.sleep(0.1)
            yield
        finally:
            os.close(fd)

    def busy(self, name: str) -> bool:
        """True while another process holds the endpoint's lock."""
        path = self.dir / f"{name}.lock"
        if not path.exists():
            return False
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except OSError:
            return True
        finally:
            os.close(fd)


__all__ = ["EndpointState", "StateStore", "VariantState"]
