"""The compose target's test kit: two offline images for the optional services, never pulled,
cached by tag so a machine builds each once, and the Compose override file that points a
project at them (the same mechanism users have, ``-C override_files=``).

- ``debian_image()`` is ``mldeploy-compose-debian:bookworm-3``: mmdebstrap's essential variant
  with Debian's ``postgresql-15`` and ``prometheus`` streamed into ``docker import``, then a
  ``--network none`` build adding the PostgreSQL entrypoint (the official image's
  ``POSTGRES_*`` / ``PGDATA`` / ``PGPORT`` interface). It serves ``postgres`` (its entrypoint)
  and ``metrics`` (``/usr/bin/prometheus`` as ``nobody``, the official image's command line).
- ``python_image(base)`` is ``mldeploy-compose-python:<digest>``: mldeploy's own image builder
  on the offline base (the wheelhouse made on the host with pip's cache, installed with
  ``--network none``) with ``mlflow-skinny``, the tracking server's dependencies,
  ``psycopg2-binary``, ``boto3`` and ``moto[s3]`` pinned, plus ``minio`` / ``mc`` commands
  (``minio-shim.py``: MinIO's ``server DIR --address`` and ``mc ready`` interface on moto's
  S3 server, objects in memory). It serves ``tracking`` and ``artifacts``.
- ``overrides(...)`` gives each service its image; ``override(path, services)`` writes the file.
- ``python -m mldeploy.plugins.compose.testing build BASE_IMAGE`` builds both (what
  ``scripts/build-compose-test-images.sh`` runs, in the background from ``scripts/test.sh``).

Every image made here carries the label ``io.mldeploy.test=compose``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LABEL = "io.mldeploy.test=compose"
DEBIAN_IMAGE = "mldeploy-compose-debian:bookworm-3"
_HERE = Path(__file__).parent
_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


class ImageUnavailable(Exception):
    """The image cannot be built here (the reason says why: no mmdebstrap, not root, ...)."""


def _has(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True,
                          check=False).returncode == 0


def _layer(ref: str, base: str, dockerfile: str, files: dict[str, Path], timeout: float) -> None:
    """``ref``: ``dockerfile`` (FROM ``base``, adding ``files``) built with ``--network none``."""
    with tempfile.TemporaryDirectory() as ctx:
        for name, src in files.items():
            shutil.copy(src, Path(ctx) / name)
        (Path(ctx) / "Dockerfile").write_text(f"FROM {base}\n{dockerfile}LABEL {LABEL}\n")
        build = subprocess.run(["docker", "build", "--network", "none", "--pull=false", "-q",
                                "-t", ref, ctx], capture_output=True, text=True,
                               timeout=timeout, check=False)
    if build.returncode != 0:
        raise ImageUnavailable(f"docker build of {ref} failed: {build.stderr[-600:]}")


def debian_image(timeout: float = 900) -> str:
    """``DEBIAN_IMAGE``, built once when the engine does not have it."""
    ref = DEBIAN_IMAGE
    if _has(ref):
        return ref
    if not shutil.which("mmdebstrap"):
        raise ImageUnavailable("mmdebstrap is not installed (scripts/install-docker.sh)")
    raw = ref + "-rootfs"
    cmd = ["mmdebstrap", "--quiet", "--variant=essential", "--architectures=amd64",
           "--include=postgresql-15,util-linux,prometheus,wget",
           "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
           "--dpkgopt=path-exclude=/usr/share/locale/*",
           # Prometheus' web UI scripts (the tests use its API) and PostgreSQL's LLVM JIT (it
           # runs without it when llvmjit.so is absent): ~350 of ~690 MB
           "--dpkgopt=path-exclude=/usr/share/javascript/*",
           "--dpkgopt=path-exclude=/usr/lib/postgresql/15/lib/llvmjit*",
           "--dpkgopt=path-exclude=/usr/lib/postgresql/15/lib/bitcode/*",
           "--dpkgopt=path-exclude=/usr/lib/x86_64-linux-gnu/libLLVM*",
           "--dpkgopt=path-exclude=/usr/lib/x86_64-linux-gnu/libz3*",
           "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
           "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/* "
           "\"$1\"/var/lib/postgresql/15",
           "bookworm", "-"] + ([str(_SOURCES)] if _SOURCES.is_file() else [])
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        raise ImageUnavailable("no Docker engine answers (start dockerd first)")
    # A session of its own: when writing the tarball fails (docker import died), mmdebstrap sends
    # SIGHUP to its whole process group, which would otherwise be the caller's (pytest, .ci/run).
    strap = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
    imp = subprocess.run(["docker", "import", "--change", "ENV LANG=C.UTF-8", "--change",
                          f"LABEL {LABEL}", "-", raw],
                         stdin=strap.stdout, capture_output=True, timeout=timeout, check=False)
    assert strap.stdout is not None
    strap.stdout.close()
    err = strap.stderr.read().decode(errors="replace") if strap.stderr else ""
    if strap.wait(60) != 0 or imp.returncode != 0:
        raise ImageUnavailable(f"mmdebstrap/docker import failed: {(err or imp.stderr)[-600:]}")
    try:
        _layer(ref, raw,
               "COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh\n"
               "RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh "
               "&& mkdir -p /prometheus && chown 65534:65534 /prometheus\n"
               "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:"
               "/usr/bin:/sbin:/bin PGDATA=/var/lib/postgresql/data\n"
               "STOPSIGNAL SIGINT\n"
               'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]\nCMD ["postgres"]\n',
               {"entrypoint.sh": _HERE / "postgres-entrypoint.sh"}, timeout)
    finally:
        subprocess.run(["docker", "rmi", raw], capture_output=True, check=False)
    return ref


PYTHON_REQUIREMENTS = ["mlflow-skinny==3.17.2", "Flask-CORS<7", "alembic!=1.10.0,<2",
                       "graphene<4", "huey>=2.5.4,<4", "sqlalchemy>=1.4,<3",
                       "cryptography>=43,<51", "aiohttp>=3.7,<4", "docker>=4,<8",
                       "psycopg2-binary==2.9.10", "boto3==1.35.99", "moto[s3]==5.2.5"]


def python_image(base_image: str, log: Any = None, timeout: float = 900) -> str:
    """The tracking server's and the S3 store's image, built once per content digest."""
    from mldeploy import images
    from mldeploy.config import build_config
    from mldeploy.images import BuildOptions

    opts = build_config(BuildOptions, {"base_image": base_image, "env_manager": "local",
                                       "requirements": PYTHON_REQUIREMENTS})
    shim = (_HERE / "minio-shim.py").read_bytes()
    import hashlib

    tag = hashlib.sha256(shim).hexdigest()[:6]
    req = images.request(None, None, opts, lambda d: f"mldeploy-compose-python-build:{d[:12]}",
                         labels={"io.mldeploy.test": "compose"})
    ref = f"mldeploy-compose-python:{req.digest[:12]}-{tag}"
    if _has(ref):
        return ref
    if not _has(req.reference):
        try:
            images.docker_build(req, log or (lambda _m: None))
        except Exception as exc:  # noqa: BLE001 - the reason goes into the skip
            raise ImageUnavailable(f"building the tracking server image failed: "
                                   f"{str(exc)[-400:]}") from None
    try:
        _layer(ref, req.reference,
               "USER 0:0\nCOPY minio-shim.py /usr/local/bin/minio\n"
               "RUN chmod 0755 /usr/local/bin/minio && ln -s minio /usr/local/bin/mc\n",
               {"minio-shim.py": _HERE / "minio-shim.py"}, timeout)
    finally:
        subprocess.run(["docker", "rmi", req.reference], capture_output=True, check=False)
    return ref


def overrides(debian: str, python: str, services: set[str] | frozenset[str]) -> dict[str, Any]:
    """The override file's ``services`` for the project's optional ``services``: each its
    offline image (``pull_policy: never``). The Python image runs the tracking server and the
    store as root (the store makes its bucket folders in its volume; the official images run
    as root too), Prometheus runs as ``nobody`` from the Debian image."""
    table: dict[str, dict[str, Any]] = {
        "postgres": {"image": debian},
        "metrics": {"image": debian, "entrypoint": ["/usr/bin/prometheus"],
                    "user": "65534:65534"},
        "tracking": {"image": python},
        "artifacts": {"image": python},
    }
    return {name: {**spec, "pull_policy": "never"} for name, spec in table.items()
            if name in services}


def override(path: Path, services: dict[str, dict[str, Any]]) -> Path:
    """A Compose override file (``docker compose -f compose.yaml -f PATH``) with ``services``
    (e.g. ``overrides(debian_image(), python_image(base), {"postgres"})``)."""
    import yaml

    path.write_text(yaml.safe_dump({"services": services}, sort_keys=False))
    return path


def build_all(base_image: str) -> dict[str, tuple[str, float]]:
    """Both images (each skipped when present); returns ``{what: (reference, seconds)}``."""
    out: dict[str, tuple[str, float]] = {}
    for what, make in (("debian", lambda: debian_image()),
                       ("python", lambda: python_image(base_image))):
        start = time.monotonic()
        out[what] = (make(), time.monotonic() - start)
    return out


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "build":
        print("usage: python -m mldeploy.plugins.compose.testing build BASE_IMAGE",
              file=sys.stderr)
        return 2
    try:
        built = build_all(argv[1])
    except ImageUnavailable as exc:
        print(f"compose test images: {exc}", file=sys.stderr)
        return 1
    for what, (ref, seconds) in built.items():
        print(f"{what}\t{ref}\t{seconds:.0f} s")
    return 0


__all__ = ["DEBIAN_IMAGE", "LABEL", "PYTHON_REQUIREMENTS", "ImageUnavailable", "build_all",
           "debian_image", "override", "overrides", "python_image"]
