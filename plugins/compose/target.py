"""The compose target: the hooks the core calls. Compose and Docker calls are in ``_client``,
the project files in ``project``, the front proxy in ``proxy``.

A deployment is a Compose project in ``PROJECTS_DIR/NAME`` (project name ``mldeploy-NAME``): the
front ``proxy`` published on ``publish`` (127.0.0.1 by default), one model service
(``model-blue`` or ``model-green``) and the optional services of ``-C with=...``. ``replace``
starts the other colour beside the serving one, waits for its health check, switches the
proxy's routes, then stops the old one within its ``stop_grace_period``; if the new one never
gets healthy the old one keeps serving and the new service and files are put back as they were.
Create / replace run in the core's transaction: a failed or interrupted run removes exactly what
it made. The verbs always wait (no ``no-wait`` capability).
"""

from __future__ import annotations

import dataclasses
import functools
import http.client
import os
import secrets as _secrets
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from mldeploy import images
from mldeploy.errors import (
    ConfigError,
    DeploymentExistsError,
    DeploymentNotFoundError,
    MldeployError,
    TargetError,
)
from mldeploy.plugins.compose import project as pj
from mldeploy.plugins.compose._client import Clients, Compose, Engine, free_port
from mldeploy.plugins.compose.config import ComposeConfig, Optional_, parse_publish
from mldeploy.plugins.compose.errors import compose_errors, invocation_error, last_lines
from mldeploy.redact import redact
from mldeploy.target import (
    Action,
    Change,
    Deletion,
    Deployment,
    DeployMode,
    NameRule,
    Plan,
    Prediction,
    Resource,
    Status,
    Target,
    Variant,
)
from mldeploy.transaction import StepFailed, Transaction

IMAGE_REPO = "mldeploy-compose-model"
IMAGE_LABEL = "io.mldeploy.compose.image"


def image_tag(digest: str) -> str:
    return f"{IMAGE_REPO}:{digest[:16]}"


class StartFailed(StepFailed):
    """A new service never got healthy: why, and the tail of its log."""

    def __init__(self, service: str, reason: str, logs: str) -> None:
        text = f"the new service {service} did not become healthy: {reason}"
        if logs:
            text += f"\n--- last lines of its log ---\n{logs}"
        super().__init__(text)


class ComposeTarget(Target):
    name = "compose"
    config_class = ComposeConfig
    capabilities: ClassVar[frozenset] = frozenset()
    # Compose project names: lower-case letters, digits, '-' and '_' (mldeploy-NAME).
    name_rule = NameRule(pattern=r"[a-z0-9](-*[a-z0-9])*", max_length=50,
                         hint="use 1-50 lower-case letters, digits and hyphens, starting and "
                              "ending with a letter or digit")
    timeout_setting = "timeout_seconds"

    def __init__(self, config: Any = None, *, location: str | None = None,
                 clients: Clients | None = None, progress: Any = None) -> None:
        if isinstance(config, Mapping) and "with" in config:  # `with` is the key users write
            config = {**{k: v for k, v in config.items() if k != "with"},
                      "with_": config["with"]}
        if location and not location.startswith(("/", "~")):
            location = "/" + location  # compose:/srv/mldeploy -> /srv/mldeploy
        super().__init__(config, location=location, clients=clients or Clients(),
                         progress=progress)
        self.root = self.config.resolved_projects_dir(self.location)

    # -- clients ----------------------------------------------------------------------------------

    @functools.cached_property
    def compose(self) -> Compose:
        c = self.clients.compose or Compose.find(self.config.compose_command)
        self.progress(f"using {c.describe}")
        return c

    @functools.cached_property
    def engine(self) -> Engine:
        return self.clients.engine or Engine()

    def _say(self, message: str) -> None:
        self.progress(message)

    # -- files ------------------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        return self.root / name

    def _files(self) -> list[str]:
        return ["compose.yaml", *[str(Path(f).expanduser().resolve())
                                  for f in self.config.override_files]]

    def _load(self, name: str) -> pj.ProjectState:
        path = self._dir(name) / pj.STATE_FILE
        try:
            return pj.ProjectState.from_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DeploymentNotFoundError(f"no compose deployment named {name!r}",
                                          hint=f"mldeploy list --target compose:{self.root} "
                                               "shows them") from None
        except (OSError, ValueError, TypeError) as exc:
            raise TargetError(f"the state of compose deployment {name!r} cannot be read "
                              f"({type(exc).__name__})",
                              hint="mldeploy delete removes it") from None

    def _secrets(self, state: pj.ProjectState) -> dict[str, str]:
        """The secret values: the config's, else the ones the project has; the optional
        services' passwords are made here once (random) and kept in the project's files."""
        values = dict(self.config.secrets)
        folder = self._dir(state.name) / "secrets"
        wanted = set(state.secrets)
        if Optional_.POSTGRES.value in state.with_:
            wanted.add("postgres_password")
        if Optional_.ARTIFACTS.value in state.with_:
            wanted |= {"artifacts_user", "artifacts_password"}
        for key in sorted(wanted - set(values)):
            path = folder / key
            if path.is_file():
                values[key] = path.read_text(encoding="utf-8")
            elif key == "artifacts_user":
                values[key] = "mldeploy"
            else:
                values[key] = _secrets.token_urlsafe(24)
        return values

    def _write(self, state: pj.ProjectState, *, validate: bool = True) -> pj.ProjectFiles:
        files = pj.render(self.config, state, self._secrets(state))
        if validate:
            pj.validate(files.compose)
        folder = self._dir(state.name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "secrets").mkdir(mode=0o700, exist_ok=True)
        for key, value in files.secrets.items():
            _atomic(folder / "secrets" / key, value, 0o600)
            if os.geteuid() == 0:  # readable by the services' non-root user, still 0600
                os.chown(folder / "secrets" / key, pj.APP_UID, pj.APP_UID)
        for rel, text in files.files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            _atomic(folder / rel, text, 0o644)
        _atomic(folder / "compose.yaml", files.compose_yaml(), 0o644)
        _atomic(folder / ".env", files.env_text(), 0o600)
        _atomic(folder / pj.STATE_FILE, state.to_json() + "\n", 0o600)
        return files

    def _snapshot(self, name: str) -> dict[str, str]:
        folder = self._dir(name)
        keep = ["compose.yaml", ".env", pj.STATE_FILE, "proxy/routes.json",
                "metrics/targets.json"]
        return {rel: (folder / rel).read_text(encoding="utf-8") for rel in keep
                if (folder / rel).is_file()}

    def _restore(self, name: str, snapshot: dict[str, str]) -> None:
        for rel, text in snapshot.items():
            _atomic(self._dir(name) / rel, text, 0o600 if rel in (".env", pj.STATE_FILE)
                    else 0o644)

    # -- images -----------------------------------------------------------------------------------

    def _image(self, model_uri: str) -> tuple[str, str]:
        with compose_errors("the model's image"):
            return self._image_unmapped(model_uri)

    def _image_unmapped(self, model_uri: str) -> tuple[str, str]:
        c = self.config
        if c.image:
            iid = self.engine.image_id(c.image)
            if iid is None:
                raise ConfigError(f"image {c.image!r} is not on the local Docker engine",
                                  hint="build or load it first, or drop -C image to build one")
            return c.image, iid
        from mldeploy.model_uri import materialize

        with materialize(model_uri) as model_dir:
            req = images.request(model_dir, model_uri, c.build, image_tag,
                                 labels={IMAGE_LABEL: "1"})
            iid = None if c.rebuild else self.engine.image_id(req.reference)
            if iid is not None:
                self._say(f"image {req.reference} is built already")
                return req.reference, iid
            self._say(f"building image {req.reference} ({c.build.describe()})")
            builder = self.clients.builder or images.docker_build
            return req.reference, builder(req, self._say)

    # -- create / replace -------------------------------------------------------------------------

    def _new_state(self, name: str) -> pj.ProjectState:
        c = self.config
        state = pj.ProjectState(name=name, publish=c.publish, network_mode=c.network_mode.value,
                                with_=[w.value for w in c.with_], secrets=sorted(c.secrets),
                                user=f"{pj.APP_UID}:{pj.APP_UID}" if os.geteuid() == 0
                                else f"{os.getuid()}:{os.getgid()}")
        if state.host:
            for svc in ("postgres", "artifacts", "tracking", "metrics"):
                if svc in state.with_:
                    state.ports[svc] = free_port()
        return state

    def _model(self, state: pj.ProjectState, color: str, model_uri: str) -> pj.ModelState:
        ref, iid = self._image(model_uri)
        port = free_port() if state.host else pj.MODEL_PORT
        return pj.ModelState(color=color, image=ref, image_id=iid, model_uri=model_uri, port=port)

    def _start(self, tx: Transaction, state: pj.ProjectState, services: list[str],
               wait_for: list[str], *, only: bool) -> None:
        folder = self._dir(state.name)
        project = pj.project_name(state.name)
        with compose_errors(f"starting {', '.join(services) or state.name}"):
            try:
                self.compose.up(folder, self._files(), services, pull=self.config.pull.value,
                                no_deps=only, timeout=max(tx.remaining(), 60))
            except Exception as exc:
                from mldeploy.plugins.compose.errors import ComposeFailed

                if isinstance(exc, ComposeFailed):
                    text = f"docker compose up failed: {redact(last_lines(exc.output), 800)}"
                    raise StepFailed(text + self._bad_logs(project)) from None
                raise
            for svc in wait_for:
                why = self.engine.wait_healthy(project, svc, max(tx.remaining(), 1.0),
                                               tick=self._say)
                if why is not None:
                    logs = self.engine.logs(project, svc, 400)
                    from mldeploy.plugins.local.errors import log_tail

                    raise StartFailed(svc, why, redact(log_tail(logs, self.config.log_lines),
                                                      4000))
                self._say(f"{svc} is healthy")

    def _bad_logs(self, project: str) -> str:
        """The log tail of each service of ``project`` that exited or is unhealthy."""
        from mldeploy.plugins.local.errors import log_tail

        out = ""
        try:
            for c in self.engine.containers(project):
                if not c.ok and (c.health != "starting" or c.restarts):
                    tail = log_tail(self.engine.logs(project, c.service, 400),
                                    self.config.log_lines)
                    if tail:
                        out += (f"\n--- last lines of {c.service}'s log ---\n"
                                f"{redact(tail, 3000)}")
        except Exception:  # noqa: BLE001 - courtesy: the compose error is the real one
            pass
        return out

    def _create(self, tx: Transaction, model_uri: str) -> Deployment:
        name = tx.name
        folder = self._dir(name)
        if (folder / pj.STATE_FILE).exists():
            raise DeploymentExistsError(f"compose deployment {name!r} already exists",
                                        hint="use --mode replace to change its model")
        self.progress(f"creating {name} in {folder} with {self.compose.describe}",
                      Status.CREATING)
        state = self._new_state(name)
        model = self._model(state, "blue", model_uri)
        state.models["blue"] = model
        state.active = "blue"
        kept = (folder / "secrets").is_dir()  # a delete that kept the data volumes
        if folder.exists():  # left over: nothing serves from it
            self._down(folder, volumes=False)
            _clear(folder, keep_secrets=True)
        tx.record(Resource("project-dir", str(folder)),
                  functools.partial(_clear, folder, keep_secrets=kept))
        if kept:
            self._say(f"reusing the secrets kept in {folder}/secrets with the data volumes")
        self._write(state)
        tx.record(Resource("compose-project", pj.project_name(name)),
                  functools.partial(self._down, folder, volumes=True))
        waits = [pj.service_name("blue"), "proxy"] + [
            s for s in ("postgres", "artifacts", "tracking", "metrics") if s in state.with_]
        self._start(tx, state, [], waits, only=False)
        self.progress(f"{name} is ready at {self._url(state)}", Status.READY)
        return self._describe(state)

    def _replace(self, tx: Transaction, model_uri: str) -> Deployment:
        name = tx.name
        state = self._load(name)
        folder = self._dir(name)
        old = state.active
        new = pj.other(old)
        self.progress(f"replacing {pj.service_name(old)} of {name} with "
                      f"{pj.service_name(new)}", Status.UPDATING)
        if new in state.models:  # an interrupted replace left it: it serves nothing
            with compose_errors(f"removing the leftover {pj.service_name(new)}"):
                self.compose.rm(folder, self._files(), [pj.service_name(new)])
            del state.models[new]
        before = self._snapshot(name)
        state.models[new] = self._model(state, new, model_uri)
        tx.record(Resource("project-files", str(folder)),
                  functools.partial(self._restore, name, before))
        self._write(state)
        svc_new = pj.service_name(new)
        tx.record(Resource("service", f"{pj.project_name(name)}/{svc_new}"),
                  functools.partial(self._rm, folder, [svc_new]))
        self._start(tx, state, [svc_new], [svc_new], only=True)
        # the switch: the proxy reads routes.json on its next request
        state.active = new
        state.generation += 1
        routes_before = before.get("proxy/routes.json", "")
        tx.record(Resource("routes", f"{folder}/proxy/routes.json"),
                  functools.partial(_atomic, folder / "proxy" / "routes.json", routes_before,
                                    0o644))
        self._write(state)
        self._say(f"proxy switched to {svc_new}")
        self._retire(state, old)
        self.progress(f"{name} is ready at {self._url(state)}", Status.READY)
        return self._describe(state)

    def _retire(self, state: pj.ProjectState, color: str) -> None:
        """Stop and remove the old model service (after the switch: failures are reported,
        the new one serves already)."""
        folder = self._dir(state.name)
        svc = pj.service_name(color)
        time.sleep(0.5)  # requests the proxy routed just before the switch reach the old one
        try:
            with compose_errors(f"removing {svc}"):
                self.compose.rm(folder, self._files(), [svc],
                                timeout=self.config.stop_grace_period + 60)
            self._say(f"stopped and removed {svc}")
            state.models.pop(color, None)
            self._write(state)
        except MldeployError as exc:
            self._say(f"could not remove {svc}: {exc.message} (mldeploy delete removes it)")

    def _rm(self, folder: Path, services: list[str]) -> None:
        with compose_errors(f"removing {', '.join(services)}"):
            self.compose.rm(folder, self._files(), services)

    def _down(self, folder: Path, *, volumes: bool) -> None:
        with compose_errors(f"removing the project in {folder}"):
            if (folder / "compose.yaml").is_file():
                self.compose.down(folder, self._files(), volumes=volumes)

    # -- delete -----------------------------------------------------------------------------------

    def _delete(self, name: str, *, wait: bool, timeout: float) -> Deletion:
        folder = self._dir(name)
        project = pj.project_name(name)
        if not folder.exists():
            return Deletion(name, self.name, existed=False)
        removed: list[Resource] = []
        leftover: list[Resource] = []
        with compose_errors(f"listing the containers of {project}"):
            before = [c.name for c in self.engine.containers(project)]
            volumes = self.engine.volumes(project)
        had_state = (folder / pj.STATE_FILE).is_file()
        keep_data = not self.config.volumes and (any(
            s in self._load_quiet(name) for s in ("postgres", "artifacts", "metrics"))
            or (not had_state and (folder / "secrets").is_dir()))
        self._down(folder, volumes=self.config.volumes)
        with compose_errors(f"listing the containers of {project}"):
            after = {c.name for c in self.engine.containers(project)}
            volumes_left = self.engine.volumes(project)
        removed += [Resource("container", c) for c in before if c not in after]
        removed += [Resource("volume", v) for v in sorted(volumes - volumes_left)]
        leftover += [Resource("container", c) for c in sorted(after)]
        if keep_data:  # the data volumes stay, and so do the passwords that open them
            (folder / pj.STATE_FILE).unlink(missing_ok=True)
            self._say(f"kept the data volumes of {project} and {folder}/secrets "
                      "(delete again with -C volumes=true removes them)")
        else:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(Resource("project-dir", str(folder)))
        return Deletion(name, self.name, existed=had_state or bool(removed),
                        removed=tuple(removed),
                        leftover=tuple(leftover))

    def _load_quiet(self, name: str) -> list[str]:
        try:
            return self._load(name).with_
        except MldeployError:
            return []

    # -- get / list / invoke ----------------------------------------------------------------------

    def _url(self, state: pj.ProjectState) -> str:
        host, port = parse_publish(state.publish)
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"http://{host}:{port}"

    def _get(self, name: str) -> Deployment:
        return self._describe(self._load(name))

    def _list(self) -> list[Deployment]:
        out = []
        if not self.root.is_dir():
            return out
        for path in sorted(self.root.iterdir()):
            if (path / pj.STATE_FILE).is_file():
                try:
                    out.append(self._get(path.name))
                except MldeployError as exc:
                    out.append(Deployment(path.name, self.name, Status.UNKNOWN,
                                          failure_reason=exc.message))
        return out

    def _describe(self, state: pj.ProjectState) -> Deployment:
        project = pj.project_name(state.name)
        try:
            with compose_errors(f"listing the containers of {project}"):
                infos = {c.service: c for c in self.engine.containers(project)}
        except MldeployError:
            infos = None
        serving = state.serving()
        wanted = ["proxy", *(pj.service_name(c) for c in state.models), *state.with_]
        problems = []
        services: dict[str, Any] = {}
        for svc in wanted:
            info = infos.get(svc) if infos is not None else None
            services[svc] = info.describe() if info else ("unknown" if infos is None
                                                         else "missing")
            if infos is not None and (info is None or not info.ok):
                problems.append(f"{svc} is {services[svc]}")
        if infos is None:
            status, reason = Status.UNKNOWN, "no Docker engine answers"
        elif problems:
            status, reason = Status.FAILED, "; ".join(problems)
        else:
            status, reason = Status.READY, None
        resources = [Resource("project-dir", str(self._dir(state.name)))]
        resources += [Resource("container", infos[s].name) for s in wanted
                      if infos and s in infos]
        url = self._url(state)
        details = {"project": project, "project_dir": str(self._dir(state.name)),
                   "services": services, "active": pj.service_name(state.active),
                   "network_mode": state.network_mode, "with": list(state.with_),
                   "invocations_url": f"{url}/invocations",
                   "image": serving.image if serving else None}
        return Deployment(
            state.name, self.name, status, url=url,
            model_uri=serving.model_uri if serving else None, resources=tuple(resources),
            variants=(Variant(pj.service_name(serving.color), 1.0, serving.model_uri, 1),)
            if serving else (), failure_reason=reason, details=details)

    def _invoke(self, name: str, body: bytes, ctype: str, variant: str | None) -> Prediction:
        state = self._load(name)
        host, port = parse_publish(state.publish)
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        conn = http.client.HTTPConnection(host, port, timeout=80)
        try:
            conn.request("POST", "/invocations", body=body,
                         headers={"Content-Type": ctype, "Content-Length": str(len(body))})
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise TargetError(f"compose deployment {name!r} does not answer on "
                              f"{self._url(state)} ({type(exc).__name__})",
                              hint="mldeploy get --target compose shows its services") from None
        finally:
            conn.close()
        if resp.status != 200:
            raise invocation_error(name, resp.status, raw)
        return Prediction.from_response(raw, resp.getheader("Content-Type"))

    # -- plan -------------------------------------------------------------------------------------

    def _plan(self, mode: DeployMode, name: str, model_uri: str) -> Plan:
        folder = self._dir(name)
        exists = (folder / pj.STATE_FILE).is_file()
        if mode is DeployMode.CREATE and exists:
            raise DeploymentExistsError(f"compose deployment {name!r} already exists",
                                        hint="use --mode replace to change its model")
        if mode is not DeployMode.CREATE and not exists:
            raise DeploymentNotFoundError(f"no compose deployment named {name!r}",
                                          hint=f"mldeploy list --target compose:{self.root} "
                                               "shows them")
        state = self._load(name) if exists else self._new_state(name)
        color = pj.other(state.active) if exists else "blue"
        if self.config.image:
            ref, how = self.config.image, "given with -C image"
        else:
            from mldeploy.model_uri import materialize

            with materialize(model_uri) as model_dir:
                ref = images.request(model_dir, model_uri, self.config.build,
                                     image_tag).reference
            how = f"build: {self.config.build.describe()}"
        built = self._image_known(ref)
        state = dataclasses.replace(state, models=dict(state.models))
        state.models[color] = pj.ModelState(color, ref, model_uri,
                                            port=free_port() if state.host else pj.MODEL_PORT)
        # the secrets are placeholders: a dry run shows where they go, never their values
        files = pj.render(self.config, state, {})
        pj.validate(files.compose)
        changes = [Change(Action.KEEP if built else Action.CREATE, Resource("image", ref),
                          ("built already; " if built else "") + how)]
        project = pj.project_name(name)
        if exists:
            changes += [
                Change(Action.CREATE, Resource("service", f"{project}/{pj.service_name(color)}"),
                       "started beside the serving one, must pass its health check"),
                Change(Action.UPDATE, Resource("routes", f"{folder}/proxy/routes.json"),
                       "the proxy switches to it"),
                Change(Action.DELETE, Resource("service",
                                               f"{project}/{pj.service_name(state.active)}"),
                       f"after the switch, within {self.config.stop_grace_period}s"),
            ]
        else:
            changes += [Change(Action.CREATE, Resource("project-dir", str(folder)),
                               "compose.yaml, .env, secrets/ (0600)")]
            changes += [Change(Action.CREATE, Resource("service", f"{project}/{svc}"))
                        for svc in files.compose["services"]]
        return Plan(self.name, name, mode, tuple(changes), manifests=(files.compose,))

    def _image_known(self, ref: str) -> bool:
        try:
            with compose_errors("looking up the model's image"):
                return self.engine.image_id(ref) is not None
        except MldeployError:
            return False


def _clear(folder: Path, *, keep_secrets: bool) -> None:
    """Remove the project folder, or everything in it but ``secrets/``."""
    if not keep_secrets:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for child in folder.iterdir() if folder.is_dir() else ():
        if child.name == "secrets":
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _atomic(path: Path, text: str, mode: int) -> None:
    """Write ``text`` to ``path`` through a rename (readers see the old or the new file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


__all__ = ["ComposeTarget", "image_tag"]
