"""The steps a local deploy is made of: the model's image, a new variant container that must
answer ``/ping``, the switch of the gateway's routes, the drain and stop of the old containers.

Each step records what it makes in the core's transaction as it makes it (a container name
before ``docker run``, the routes it replaced before the switch, a gateway it started), so a
failed run removes exactly what it created and puts the previous routes back.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path

from mldeploy import images
from mldeploy.errors import MldeployError, TargetError
from mldeploy.images import BuildOptions
from mldeploy.plugins.local import _gateway_ctl as gw
from mldeploy.plugins.local._client import ContainerSpec, Engine, Unhealthy, free_port
from mldeploy.plugins.local._resources import (
    LABEL,
    LABEL_HOME,
    container_labels,
    container_name,
    image_tag,
)
from mldeploy.plugins.local._state import EndpointState, StateStore, VariantState
from mldeploy.plugins.local.config import LocalConfig, memory_bytes
from mldeploy.plugins.local.errors import log_tail
from mldeploy.target import Resource
from mldeploy.transaction import StepFailed, Transaction

Say = Callable[[str], None]


class StartFailed(StepFailed):
    """A new container never got healthy: its name, why, the tail of its log and the file its
    whole log was saved to (the container itself is removed)."""

    def __init__(self, container: str, reason: str, logs: str, saved: Path | None) -> None:
        text = f"the new container {container} did not become healthy: {reason}"
        if logs:
            text += f"\n--- last lines of its log ---\n{logs}"
        if saved:
            text += f"\n(its whole log: {saved})"
        super().__init__(text)
        self.container, self.logs, self.saved = container, logs, saved


def save_log(directory: Path, container: str, text: str) -> Path | None:
    """Keep a failed container's log (``directory/CONTAINER.log``) after it is removed."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{container}.log"
        path.write_text(text + "\n")
        return path
    except OSError:
        return None


def limits(config: LocalConfig, previous: dict[str, object] | None) -> dict[str, object]:
    """memory/cpus/workers of new containers: the config's, else the endpoint's current ones."""
    prev = previous or {}
    return {
        "memory": config.memory if config.memory is not None else prev.get("memory"),
        "cpus": config.cpus if config.cpus is not None else prev.get("cpus"),
        "workers": config.resolved_workers() or prev.get("workers"),
    }


def build_options(config: LocalConfig, remembered: dict[str, object] | None) -> BuildOptions:
    """The build options of this run: those given now, else the endpoint's (``remembered``)."""
    return config.build_options().over(remembered)


def ensure_image(engine: Engine, config: LocalConfig, model_uri: str, say: Say,
                 remembered: dict[str, object] | None = None, home: str = "",
                 ) -> tuple[str, str, BuildOptions | None]:
    """The image to run: ``config.image`` as it is, else the model's content-tagged image,
    built once (``config.rebuild`` forces a build) with the build options given now, else the
    endpoint's (``remembered``). Returns (reference, image id, the build options used; None for
    ``config.image``). A remote model is downloaded once and removed again."""
    if config.image:
        iid = engine.image_id(config.image)
        if iid is None:
            from mldeploy.errors import ConfigError

            raise ConfigError(f"image {config.image!r} is not on the local Docker engine",
                              hint="build or load it first, or drop -C image to build one")
        return config.image, iid, None
    from mldeploy.model_uri import materialize

    options = build_options(config, remembered)
    with materialize(model_uri) as model_dir:
        # LABEL_HOME: the state directory that built it (``mldeploy cleanup`` removes only its
        # own unused images on a shared engine).
        labels = {LABEL: "1", **({LABEL_HOME: home} if home else {})}
        req = images.request(model_dir, model_uri, options, image_tag, labels=labels)
        iid = None if config.rebuild else engine.image_id(req.reference)
        if iid is not None:
            say(f"image {req.reference} is built already")
            return req.reference, iid, options
        say(f"building image {req.reference} ({options.describe()})")
        return req.reference, engine.build(req, say), options


def start_variant(engine: Engine, config: LocalConfig, *, home: str, endpoint: str,
                  variant: str, model_uri: str, weight: float, image: tuple[str, str],
                  lim: dict[str, object], tx: Transaction, timeout: float, say: Say,
                  log_dir: Path) -> VariantState:
    """Run a container of ``image`` for ``variant`` and wait for its ``/ping``; raise
    :class:`StartFailed` (with the log tail; the whole log is kept in ``log_dir``) if it never
    gets healthy. A port taken between
    picking and binding it is retried once on another port."""
    ref, iid = image
    memory = lim.get("memory")
    cpus = lim.get("cpus")
    workers = lim.get("workers")
    for attempt in (0, 1):
        port = free_port()
        cname = container_name(endpoint, variant)
        spec = ContainerSpec(
            name=cname, image=ref, port=port, env=dict(config.env),
            labels=container_labels(home, endpoint, variant, model_uri),
            memory=memory_bytes(str(memory)) if memory else None,
            cpus=float(cpus) if cpus else None,  # type: ignore[arg-type]
            workers=int(workers) if workers else None)  # type: ignore[call-overload]
        say(f"starting {cname} ({ref}) on 127.0.0.1:{port}")
        made = tx.record(Resource("container", cname),
                         functools.partial(engine.remove, cname, stop_timeout=0))
        engine.run(spec)
        try:
            engine.wait_healthy(cname, port, timeout,
                                tick=lambda s, c=cname: say(f"waiting for {c} /ping ({s:.0f} s)"))
        except Unhealthy as exc:
            logs = engine.logs(cname, 1000)
            if attempt == 0 and "address already in use" in logs.lower():
                engine.remove(cname, stop_timeout=0)
                tx.forget(made)
                continue
            saved = save_log(log_dir, cname, logs)
            raise StartFailed(cname, exc.reason, log_tail(logs, config.log_lines), saved) from None
        say(f"{cname} is healthy")
        return VariantState(name=variant, model_uri=model_uri, image=ref, container=cname,
                            port=port, weight=weight, image_id=iid, created=time.time())
    raise AssertionError("unreachable")  # pragma: no cover


def switch(store: StateStore, old: EndpointState | None, new: EndpointState,
           tx: Transaction, say: Say) -> EndpointState:
    """Make ``new`` the served state: save it and reload the gateway, or start the gateway if
    none runs (first deploy, or after a restart: on the same port when it is free). Each change
    is recorded in ``tx`` with its undo (the previous routes put back, the state file removed,
    a gateway this run started stopped)."""
    if old is not None:
        restore = dataclasses.replace(old, generation=new.generation + 1)
        tx.record(Resource("gateway-routes", old.url or f"state {store.path(old.name)}"),
                  functools.partial(_restore_routes, store, restore, tx))
    else:
        tx.record(Resource("state-file", str(store.path(new.name))),
                  functools.partial(store.remove, new.name))
    store.save(new)
    if old is not None and gw.status(old) is not None:
        gw.reload(new)
        say(f"gateway {new.url} switched to generation {new.generation}")
        return new
    try:
        port, pid = gw.start(new, store.path(new.name), store.log_path(new.name))
    except TargetError:
        if not new.port or old is None:
            raise
        say(f"port {new.port} is taken; starting the gateway on a free port")
        new = dataclasses.replace(new, port=0)
        store.save(new)
        port, pid = gw.start(new, store.path(new.name), store.log_path(new.name))
    new = dataclasses.replace(new, port=port, gateway_pid=pid)
    tx.record(Resource("gateway", new.url or f"pid {pid}"), functools.partial(gw.stop, new))
    store.save(new)
    gw.wait_ready(new)
    say(f"gateway listening on {new.url}")
    return new


def _restore_routes(store: StateStore, restore: EndpointState, tx: Transaction) -> None:
    """Undo of a switch: the previous state saved again, and the running gateway (unless this
    run started it: that one is stopped) reloaded with its routes."""
    store.save(restore)
    started_here = any(r.kind == "gateway" for r in tx.resources)
    if not started_here and gw.status(restore) is not None:
        gw.reload(restore)


def retire(engine: Engine, state: EndpointState, containers: list[str], *, drain: float,
           stop_timeout: int, say: Say) -> list[str]:
    """Wait until the gateway has no request in flight to ``containers`` (at most ``drain``
    seconds), then stop and remove them. Returns the ones that could not be removed."""
    if not containers:
        return []
    deadline = time.monotonic() + drain
    while True:
        status = gw.status(state)
        busy = {c: n for c, n in ((status or {}).get("inflight") or {}).items()
                if c in containers and n}
        if not busy:
            break
        if time.monotonic() > deadline:
            say(f"drain timed out with requests in flight: {busy}")
            break
        time.sleep(0.05)
    failed = []
    for cname in containers:
        try:
            engine.remove(cname, stop_timeout=stop_timeout)
            say(f"stopped and removed {cname}")
        except MldeployError as exc:
            say(f"could not remove {cname}: {exc}")
            failed.append(cname)
    return failed


__all__ = ["StartFailed", "build_options", "ensure_image", "limits", "retire", "start_variant",
           "switch"]
