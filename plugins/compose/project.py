"""The files of a Compose deployment, rendered from its state (pure: no Docker, no Compose).

One folder per deployment holds a Compose Specification project:

``compose.yaml``   the services (no ``version:``), validated against the Compose Specification
                   JSON schema vendored in ``schema/compose-spec.json`` (:func:`validate`)
``.env``           the settings Compose interpolates into ``compose.yaml`` (limits, address)
``secrets/NAME``   one file per secret, mode 0600, referenced by the top-level ``secrets:``
``proxy/``         the front proxy's script and ``routes.json`` (which model service serves)
``metrics/``       Prometheus' configuration and its scrape targets (``-C with=metrics``)
``.mldeploy.json`` the target's state: which model services exist, their images and ports

Model services are ``model-blue`` and ``model-green``: a replace starts the other colour beside
the serving one, switches ``routes.json`` when it is healthy, then removes the old one.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mldeploy.errors import ConfigError
from mldeploy.plugins.compose.config import ComposeConfig, NetworkMode, Optional_, parse_publish

SCHEMA = Path(__file__).parent / "schema" / "compose-spec.json"
PROXY_SCRIPT = Path(__file__).parent / "proxy.py"
COLORS = ("blue", "green")
APP_UID = 10001  # the image builder's non-root user (mldeploy.container.image.dockerfile)
NOBODY = "65534:65534"
MODEL_PORT = 8080  # inside the model image
PROXY_PORT = 8000
PYTHON = "/opt/mldeploy/venv/bin/python"  # the model image's interpreter (no curl in it)
LABEL = "io.mldeploy.compose"
STATE_FILE = ".mldeploy.json"
POSTGRES_USER = "mlflow"
BUCKET = "mlflow"


def other(color: str) -> str:
    return COLORS[1 - COLORS.index(color)]


def service_name(color: str) -> str:
    return f"model-{color}"


def project_name(name: str) -> str:
    return f"mldeploy-{name}"


@dataclass
class ModelState:
    """One model service: its colour, image (and id), model URI and host-mode port."""

    color: str
    image: str
    model_uri: str
    image_id: str = ""
    port: int = MODEL_PORT
    service: dict[str, Any] = field(default_factory=dict)  # as rendered: re-emitted verbatim


@dataclass
class ProjectState:
    """What ``.mldeploy.json`` holds; ``active`` is the colour the proxy routes to."""

    name: str
    publish: str
    network_mode: str
    active: str = "blue"
    generation: int = 1
    models: dict[str, ModelState] = field(default_factory=dict)
    with_: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)  # host mode: the other services' ports
    secrets: list[str] = field(default_factory=list)
    # the model services' user: the image's non-root user when mldeploy runs as root (it then
    # gives the 0600 secret files to that user), else the invoking user, who owns them (Compose
    # bind-mounts file secrets with their host owner and mode, ignoring uid/gid/mode)
    user: str = f"{APP_UID}:{APP_UID}"

    def to_json(self) -> str:
        data = {k: v for k, v in self.__dict__.items() if k != "models"}
        data["models"] = {c: m.__dict__ for c, m in self.models.items()}
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ProjectState:
        data = json.loads(text)
        models = {c: ModelState(**m) for c, m in data.pop("models", {}).items()}
        return cls(models=models, **data)

    @property
    def host(self) -> bool:
        return self.network_mode == NetworkMode.HOST.value

    def serving(self) -> ModelState | None:
        return self.models.get(self.active)


@dataclass(frozen=True)
class ProjectFiles:
    """Everything written into the project folder (paths relative to it)."""

    compose: dict[str, Any]
    env: dict[str, str]
    secrets: dict[str, str]
    files: dict[str, str]

    def compose_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.compose, sort_keys=False, default_flow_style=False)

    def env_text(self) -> str:
        lines = ["# Settings of this deployment, interpolated into compose.yaml by Compose.",
                 "# Secrets are not here: they are files in secrets/ (mode 0600)."]
        lines += [f"{k}={v}" for k, v in self.env.items()]
        return "\n".join(lines) + "\n"


def _python_probe(python: str, url: str) -> list[str]:
    code = ("import sys,urllib.request as u\n"
            f"try: sys.exit(0 if u.urlopen({url!r}, timeout=3).status == 200 else 1)\n"
            "except Exception: sys.exit(1)")
    return ["CMD", python, "-c", code]


def _health(test: list[str], start: str = "60s") -> dict[str, Any]:
    return {"test": test, "interval": "2s", "timeout": "5s", "retries": 5,
            "start_period": start}


def _hardened(uid: str, grace: int) -> dict[str, Any]:
    return {"restart": "unless-stopped", "user": uid, "read_only": True,
            "tmpfs": ["/tmp:size=256m"], "security_opt": ["no-new-privileges:true"],
            "cap_drop": ["ALL"], "stop_grace_period": f"{grace}s"}


def model_service(config: ComposeConfig, state: ProjectState, model: ModelState,
                  *, name: str) -> dict[str, Any]:
    """The service of one model: the image builder's image, non-root, read-only with ``/tmp``
    as tmpfs, limits from ``.env``, a Python health check on ``/ping`` (the image has no curl),
    a stop grace period the server drains within."""
    grace = config.stop_grace_period
    port = model.port if state.host else MODEL_PORT
    env: dict[str, Any] = {
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "MLDEPLOY_HOST": "127.0.0.1" if state.host else "0.0.0.0",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "${MODEL_WORKERS}",
        "MLDEPLOY_GRACEFUL_TIMEOUT": str(max(grace - 2, 1)),
        **config.env,
    }
    svc: dict[str, Any] = {
        "image": model.image,
        "pull_policy": "never",  # built by mldeploy on this engine, never in a registry
        **_hardened(state.user, grace),
        "environment": env,
        "healthcheck": _health(_python_probe(PYTHON, f"http://127.0.0.1:{port}/ping"), "120s"),
        "deploy": {"resources": {"limits": {"cpus": "${MODEL_CPUS}",
                                            "memory": "${MODEL_MEMORY}"}}},
        "labels": {LABEL: name, f"{LABEL}.color": model.color},
    }
    if state.secrets:
        svc["secrets"] = list(state.secrets)
    deps = {}
    if Optional_.TRACKING.value in state.with_:
        deps["tracking"] = {"condition": "service_healthy"}
        svc["environment"]["MLFLOW_TRACKING_URI"] = _tracking_url(state)
    if deps:
        svc["depends_on"] = deps
    if state.host:
        svc["network_mode"] = "host"
    else:
        svc["expose"] = [str(MODEL_PORT)]
    return svc


def _tracking_url(state: ProjectState) -> str:
    return (f"http://127.0.0.1:{state.ports['tracking']}" if state.host
            else "http://tracking:5000")


def _addr(state: ProjectState, service: str, inner: int) -> str:
    return f"127.0.0.1:{state.ports[service]}" if state.host else f"{service}:{inner}"


def routes(state: ProjectState) -> dict[str, Any]:
    model = state.serving()
    if model is None:
        return {"upstream": None}
    where = (f"127.0.0.1:{model.port}" if state.host
             else f"{service_name(model.color)}:{MODEL_PORT}")
    return {"upstream": where, "color": model.color, "generation": state.generation}


def render(config: ComposeConfig, state: ProjectState, secrets: dict[str, str]) -> ProjectFiles:
    """The project files of ``state`` (``secrets``: name -> value, written as 0600 files)."""
    grace = config.stop_grace_period
    host_addr, host_port = parse_publish(state.publish)
    services: dict[str, Any] = {}
    proxy_listen = f"{host_addr}:{host_port}" if state.host else f"0.0.0.0:{PROXY_PORT}"
    probe_host = "127.0.0.1" if not state.host or host_addr in ("0.0.0.0", "::") else host_addr
    proxy: dict[str, Any] = {
        "image": config.image_of("proxy"),
        **_hardened(NOBODY, grace),
        "command": ["python3", "/etc/mldeploy-proxy/proxy.py"],
        "environment": {"PROXY_LISTEN": proxy_listen,
                        "PROXY_ROUTES": "/etc/mldeploy-proxy/routes.json"},
        "volumes": [{"type": "bind", "source": "./proxy", "target": "/etc/mldeploy-proxy",
                     "read_only": True}],
        "healthcheck": _health(_python_probe(
            "python3", f"http://{probe_host}:{proxy_listen.rpartition(':')[2]}/ping"), "120s"),
        "deploy": {"resources": {"limits": {"cpus": "0.5", "memory": "128m"}}},
        "labels": {LABEL: state.name, f"{LABEL}.role": "proxy"},
    }
    if state.host:
        proxy["network_mode"] = "host"
    else:
        proxy["ports"] = ["${PUBLISH}:" + str(PROXY_PORT)]
    services["proxy"] = proxy
    for color in COLORS:
        model = state.models.get(color)
        if model is not None:
            if not model.service:
                model.service = model_service(config, state, model, name=state.name)
            services[service_name(color)] = copy.deepcopy(model.service)
    top_secrets = {n: {"file": f"./secrets/{n}"} for n in state.secrets}
    volumes: dict[str, Any] = {}
    files = {"proxy/proxy.py": PROXY_SCRIPT.read_text(encoding="utf-8"),
             "proxy/routes.json": json.dumps(routes(state)) + "\n"}
    wanted = set(state.with_)
    if Optional_.POSTGRES.value in wanted:
        services["postgres"] = _postgres(config, state)
        volumes["postgres-data"] = {}
        top_secrets["postgres_password"] = {"file": "./secrets/postgres_password"}
    if Optional_.ARTIFACTS.value in wanted:
        services["artifacts"] = _artifacts(config, state)
        volumes["artifacts-data"] = {}
        top_secrets["artifacts_user"] = {"file": "./secrets/artifacts_user"}
        top_secrets["artifacts_password"] = {"file": "./secrets/artifacts_password"}
    if Optional_.TRACKING.value in wanted:
        services["tracking"] = _tracking(config, state)
        if Optional_.ARTIFACTS.value not in wanted:
            volumes["tracking-artifacts"] = {}
    if Optional_.METRICS.value in wanted:
        services["metrics"] = _metrics(config, state)
        volumes["metrics-data"] = {}
        files["metrics/prometheus.yml"] = _prometheus_yml()
        files["metrics/targets.json"] = json.dumps(scrape_targets(state)) + "\n"
    doc: dict[str, Any] = {"name": project_name(state.name), "services": services}
    if volumes:
        doc["volumes"] = volumes
    if top_secrets:
        doc["secrets"] = top_secrets
    env = {"PUBLISH": f"{host_addr}:{host_port}", "MODEL_CPUS": f"{config.cpus:g}",
           "MODEL_MEMORY": config.memory.lower(),
           "MODEL_WORKERS": str(config.resolved_workers())}
    return ProjectFiles(doc, env, dict(secrets), files)


def scrape_targets(state: ProjectState) -> list[dict[str, Any]]:
    """Prometheus file_sd targets: every model service's ``/metrics`` (re-read on change)."""
    out = []
    for color, model in sorted(state.models.items()):
        where = f"127.0.0.1:{model.port}" if state.host else f"{service_name(color)}:{MODEL_PORT}"
        out.append({"targets": [where], "labels": {"deployment": state.name, "color": color}})
    return out


def _prometheus_yml() -> str:
    return ("global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: mldeploy-models\n"
            "    metrics_path: /metrics\n    file_sd_configs:\n"
            "      - files: [/etc/prometheus/mldeploy/targets.json]\n"
            "        refresh_interval: 5s\n")


def _postgres(config: ComposeConfig, state: ProjectState) -> dict[str, Any]:
    env = {"POSTGRES_USER": POSTGRES_USER, "POSTGRES_DB": POSTGRES_USER,
           "POSTGRES_PASSWORD_FILE": "/run/secrets/postgres_password",
           "PGDATA": "/var/lib/postgresql/data/pgdata"}
    svc: dict[str, Any] = {
        "image": config.image_of("postgres"), "restart": "unless-stopped",
        "environment": env, "secrets": ["postgres_password"],
        "volumes": ["postgres-data:/var/lib/postgresql/data"],
        "stop_grace_period": "30s",
        "healthcheck": _health(["CMD", "pg_isready", "-h", "127.0.0.1", "-U", POSTGRES_USER,
                                "-d", POSTGRES_USER], "30s"),
        "deploy": {"resources": {"limits": {"cpus": "1", "memory": "512m"}}},
        "labels": {LABEL: state.name, f"{LABEL}.role": "postgres"},
    }
    if state.host:
        env["PGPORT"] = str(state.ports["postgres"])
        svc["network_mode"] = "host"
        svc["command"] = ["postgres", "-c", "listen_addresses=127.0.0.1"]
        svc["healthcheck"]["test"] += ["-p", str(state.ports["postgres"])]
    return svc


def _artifacts(config: ComposeConfig, state: ProjectState) -> dict[str, Any]:
    port = state.ports.get("artifacts", 9000) if state.host else 9000
    listen = f"127.0.0.1:{port}" if state.host else f":{port}"
    svc: dict[str, Any] = {
        "image": config.image_of("artifacts"), "restart": "unless-stopped",
        "entrypoint": ["sh", "-c", f"mkdir -p /data/{BUCKET} && exec minio server /data "
                                   f"--address {listen}"],
        # mc's alias "local" for the health check: the server's own address, not :9000
        "environment": {"MINIO_ROOT_USER_FILE": "artifacts_user",
                        "MINIO_ROOT_PASSWORD_FILE": "artifacts_password",
                        "MC_HOST_local": f"http://127.0.0.1:{port}"},
        "secrets": ["artifacts_user", "artifacts_password"],
        "volumes": ["artifacts-data:/data"],
        "healthcheck": _health(["CMD", "mc", "ready", "local"], "30s"),
        "deploy": {"resources": {"limits": {"cpus": "1", "memory": "512m"}}},
        "labels": {LABEL: state.name, f"{LABEL}.role": "artifacts"},
    }
    if state.host:
        svc["network_mode"] = "host"
    return svc


def _tracking(config: ComposeConfig, state: ProjectState) -> dict[str, Any]:
    port = state.ports.get("tracking", 5000) if state.host else 5000
    listen = "127.0.0.1" if state.host else "0.0.0.0"
    pg = _addr(state, "postgres", 5432)
    s3 = Optional_.ARTIFACTS.value in state.with_
    # Credentials are read from the secret files when the server starts: never in the file,
    # the environment or the command line Compose shows.
    script = ('PW="$(cat /run/secrets/postgres_password)"; ' + (
        'export AWS_ACCESS_KEY_ID="$(cat /run/secrets/artifacts_user)" '
        'AWS_SECRET_ACCESS_KEY="$(cat /run/secrets/artifacts_password)"; ' if s3 else "")
        + f'exec mlflow server --host {listen} --port {port} '
        '--backend-store-uri "postgresql+psycopg2://'
        f'{POSTGRES_USER}:$${{PW}}@{pg}/{POSTGRES_USER}" '
        + (f'--artifacts-destination s3://{BUCKET}/' if s3
           else '--artifacts-destination /mlflow-artifacts') + ' --serve-artifacts --workers 1')
    depends = {"postgres": {"condition": "service_healthy"}}
    if s3:
        depends["artifacts"] = {"condition": "service_healthy"}
    svc: dict[str, Any] = {
        "image": config.image_of("tracking"), "restart": "unless-stopped",
        "entrypoint": ["sh", "-c", script],
        "environment": {"MLFLOW_S3_ENDPOINT_URL": f"http://{_addr(state, 'artifacts', 9000)}"}
        if s3 else {},
        "secrets": ["postgres_password"] + (["artifacts_user", "artifacts_password"] if s3
                                            else []),
        "depends_on": depends,
        **({} if s3 else {"volumes": ["tracking-artifacts:/mlflow-artifacts"]}),
        "healthcheck": _health(_python_probe("python3", f"http://127.0.0.1:{port}/health"),
                               "120s"),
        "deploy": {"resources": {"limits": {"cpus": "1", "memory": "2g"}}},
        "labels": {LABEL: state.name, f"{LABEL}.role": "tracking"},
    }
    if state.host:
        svc["network_mode"] = "host"
    else:
        svc["ports"] = ["127.0.0.1::5000"]
    return svc


def _metrics(config: ComposeConfig, state: ProjectState) -> dict[str, Any]:
    port = state.ports.get("metrics", 9090) if state.host else 9090
    listen = f"127.0.0.1:{port}" if state.host else f"0.0.0.0:{port}"
    svc: dict[str, Any] = {
        "image": config.image_of("metrics"), "restart": "unless-stopped",
        "command": ["--config.file=/etc/prometheus/mldeploy/prometheus.yml",
                    "--storage.tsdb.path=/prometheus", f"--web.listen-address={listen}"],
        "volumes": [{"type": "bind", "source": "./metrics", "target": "/etc/prometheus/mldeploy",
                     "read_only": True}, "metrics-data:/prometheus"],
        "healthcheck": _health(["CMD", "wget", "-q", "-O", "/dev/null",
                                f"http://127.0.0.1:{port}/-/ready"], "30s"),
        "deploy": {"resources": {"limits": {"cpus": "0.5", "memory": "256m"}}},
        "labels": {LABEL: state.name, f"{LABEL}.role": "metrics"},
    }
    if state.host:
        svc["network_mode"] = "host"
    else:
        svc["ports"] = ["127.0.0.1::9090"]
    return svc


# -- validation -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def schema_errors(doc: Any) -> list[str]:
    """Every place ``doc`` breaks the Compose Specification schema, as ``path: message``."""
    out = []
    for err in sorted(_validator().iter_errors(doc), key=lambda e: list(map(str, e.path))):
        where = "/".join(str(p) for p in err.absolute_path) or "(top)"
        out.append(f"{where}: {err.message}")
    return out


def validate(doc: Any) -> None:
    """Raise ConfigError when ``doc`` is not a valid Compose Specification project (or has the
    obsolete ``version:``)."""
    problems = schema_errors(doc)
    if isinstance(doc, dict) and "version" in doc:
        problems.insert(0, "version: obsolete in the Compose Specification; remove it")
    if problems:
        raise ConfigError(f"the Compose project is not valid: {problems[0]}"
                          + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                          hint="check -C override values and images.*")


__all__ = ["COLORS", "LABEL", "STATE_FILE", "ModelState", "ProjectFiles", "ProjectState",
           "model_service", "other", "project_name", "render", "routes", "schema_errors",
           "scrape_targets", "service_name", "validate"]
