"""The compose target's test kit: offline images for the optional services, built from
Debian's packages (PostgreSQL) and mldeploy's own image builder (the MLflow tracking server) on
the offline base image, never pulled, and cached by tag so a machine builds each once.

``postgres_image()`` is ``mldeploy-compose-postgres:15-bookworm-1``: mmdebstrap's essential
variant with ``postgresql-15`` streamed into ``docker import``, then a ``--network none`` build
adding the entrypoint (the official image's ``POSTGRES_*`` / ``PGDATA`` / ``PGPORT``
interface; ~360 MB, ~1-6 min cold). ``tracking_image(base)`` is
``mldeploy-compose-tracking:<digest>``: mldeploy's own image builder (the wheelhouse made on the
host, installed with ``--network none``) with ``mlflow-skinny``, the tracking server's
dependencies, ``psycopg2-binary`` and ``boto3`` pinned (~330 MB, ~2-7 min cold).
``override(...)`` writes the Compose override file that points a project at them.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

POSTGRES_IMAGE = "mldeploy-compose-postgres:15-bookworm-1"
PROMETHEUS_IMAGE = "mldeploy-compose-prometheus:bookworm-1"
_HERE = Path(__file__).parent
_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


class ImageUnavailable(Exception):
    """The image cannot be built here (the reason says why: no mmdebstrap, not root, ...)."""


def _has(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True,
                          check=False).returncode == 0


def _debian_image(ref: str, packages: str, dockerfile: str, files: dict[str, Path],
                  timeout: float, drop: str = "") -> str:
    """``ref`` built once: mmdebstrap's essential variant with ``packages`` streamed into
    ``docker import``, then ``dockerfile`` (FROM the import) built with ``--network none``."""
    if _has(ref):
        return ref
    if not shutil.which("mmdebstrap"):
        raise ImageUnavailable("mmdebstrap is not installed (scripts/install-docker.sh)")
    raw = ref + "-rootfs"
    cmd = ["mmdebstrap", "--quiet", "--variant=essential", "--architectures=amd64",
           f"--include={packages}",
           "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
           "--dpkgopt=path-exclude=/usr/share/locale/*",
           "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
           "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/* " + drop,
           "bookworm", "-"] + ([str(_SOURCES)] if _SOURCES.is_file() else [])
    strap = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    imp = subprocess.run(["docker", "import", "--change", "ENV LANG=C.UTF-8", "-", raw],
                         stdin=strap.stdout, capture_output=True, timeout=timeout, check=False)
    assert strap.stdout is not None
    strap.stdout.close()
    err = strap.stderr.read().decode(errors="replace") if strap.stderr else ""
    if strap.wait(60) != 0 or imp.returncode != 0:
        raise ImageUnavailable(f"mmdebstrap/docker import failed: {(err or imp.stderr)[-600:]}")
    with tempfile.TemporaryDirectory() as ctx:
        for name, src in files.items():
            shutil.copy(src, Path(ctx) / name)
        (Path(ctx) / "Dockerfile").write_text(f"FROM {raw}\n{dockerfile}")
        build = subprocess.run(["docker", "build", "--network", "none", "-q", "-t", ref, ctx],
                               capture_output=True, text=True, timeout=timeout, check=False)
    subprocess.run(["docker", "rmi", raw], capture_output=True, check=False)
    if build.returncode != 0:
        raise ImageUnavailable(f"docker build failed: {build.stderr[-600:]}")
    return ref


def postgres_image(timeout: float = 900) -> str:
    """``POSTGRES_IMAGE``, built once (~1-6 min) when the engine does not have it."""
    return _debian_image(
        POSTGRES_IMAGE, "postgresql-15,util-linux",
        "COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh\n"
        "RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh\n"
        "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
        "/usr/bin:/sbin:/bin PGDATA=/var/lib/postgresql/data\n"
        "STOPSIGNAL SIGINT\n"
        'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]\nCMD ["postgres"]\n',
        {"entrypoint.sh": _HERE / "postgres-entrypoint.sh"}, timeout,
        drop='"$1"/var/lib/postgresql/15')


def prometheus_image(timeout: float = 900) -> str:
    """``PROMETHEUS_IMAGE``: Debian's prometheus (and wget for the health check), the official
    image's command-line interface (``--config.file=...``), as ``nobody``."""
    return _debian_image(
        PROMETHEUS_IMAGE, "prometheus,wget",
        "RUN mkdir -p /prometheus && chown 65534:65534 /prometheus\n"
        "USER 65534:65534\n"
        'ENTRYPOINT ["/usr/bin/prometheus"]\n', {}, timeout)


TRACKING_REQUIREMENTS = ["mlflow-skinny==3.17.2", "Flask-CORS<7", "alembic!=1.10.0,<2",
                         "graphene<4", "huey>=2.5.4,<4", "sqlalchemy>=1.4,<3",
                         "cryptography>=43,<51", "aiohttp>=3.7,<4", "docker>=4,<8",
                         "psycopg2-binary==2.9.10", "boto3==1.35.99"]


def tracking_image(base_image: str, log: Any = None) -> str:
    """The MLflow tracking server image, built once per content digest."""
    from mldeploy import images
    from mldeploy.config import build_config
    from mldeploy.images import BuildOptions

    opts = build_config(BuildOptions, {"base_image": base_image, "env_manager": "local",
                                       "requirements": TRACKING_REQUIREMENTS})
    req = images.request(None, None, opts, lambda d: f"mldeploy-compose-tracking:{d[:12]}")
    if _has(req.reference):
        return req.reference
    try:
        images.docker_build(req, log or (lambda _m: None))
    except Exception as exc:  # noqa: BLE001 - the reason goes into the skip
        raise ImageUnavailable(f"building the tracking server image failed: "
                               f"{str(exc)[-400:]}") from None
    return req.reference


def override(path: Path, services: dict[str, dict[str, Any]]) -> Path:
    """A Compose override file (``docker compose -f compose.yaml -f PATH``) with ``services``
    (e.g. ``{"postgres": {"image": postgres_image(), "pull_policy": "never"}}``)."""
    import yaml

    path.write_text(yaml.safe_dump({"services": services}, sort_keys=False))
    return path


__all__ = ["POSTGRES_IMAGE", "PROMETHEUS_IMAGE", "TRACKING_REQUIREMENTS", "ImageUnavailable",
           "override", "postgres_image", "prometheus_image", "tracking_image"]
