"""Build an image with the docker SDK (legacy builder, ``network_mode="none"`` by default).

Progress: each Dockerfile step is reported with the seconds it took and whether the cache served
it. A failed step raises :class:`~mldeploy.errors.BuildError` carrying the step and the tail of its
log, and a hint for the usual causes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mldeploy.errors import BuildError, ConfigError, MissingExtraError

from . import requirements
from .context import assemble_facts, choose_base
from .options import BASE_IMAGE_ENV, BuildResult, ImageOptions, default_base_image
from .wheelhouse import scrub

Log = Callable[[str], None]
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_TAIL_LINES = 25
_HINTS = (
    ("the base image has no python3", "use a base image with python3 and its venv module, e.g. "
     "python:3.11-slim or the one scripts/build-base-image.sh makes"),
    ("No module named venv", "the base image lacks Python's venv module (Debian: python3-venv)"),
    ("ensurepip is not available", "the base image lacks python3-venv; install it in the base"),
    ("No matching distribution found", "a wheel does not fit the image's Python: pass "
     "--python-version matching the base image's python3"),
    ("is not a supported wheel on this platform", "the base image's Python differs from the "
     "wheelhouse's: pass --python-version matching the base image's python3"),
    ("pull access denied", "the base image is not on this engine and cannot be pulled: build or "
     "load it first (scripts/build-base-image.sh) and pass --base-image"),
    ("manifest unknown", "the base image is not on this engine and cannot be pulled: pass "
     "--base-image with a local image"),
    ("no such host", "no registry is reachable: build a base image offline with "
     f"scripts/build-base-image.sh and pass --base-image (or set {BASE_IMAGE_ENV})"),
    ("no space left on device", "free disk space for the Docker engine (docker system prune)"),
)


def docker_client(timeout: int = 600) -> Any:
    """A docker SDK client for the engine in the environment (``DOCKER_HOST`` or the socket)."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError:
        raise MissingExtraError("the docker SDK is not installed",
                         hint="pip install 'mldeploy[docker]'") from None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except DockerException as exc:
        raise BuildError(
            f"no Docker engine answers ({type(exc).__name__})",
            hint="start the Docker daemon or set DOCKER_HOST (scripts/install-docker.sh installs "
            "one here)",
        ) from None
    return client


def image_present(client: Any, image: str) -> bool:
    """True when ``image`` is on the engine (no pull is tried)."""
    from docker.errors import ImageNotFound

    try:
        client.images.get(image)
    except ImageNotFound:
        return False
    return True


def offline_hint(image: str) -> str:
    return (f"build a base offline with scripts/build-base-image.sh (it prints the image's "
            f"name), then pass --base-image NAME (-C build.base_image=NAME on a target) or set "
            f"{BASE_IMAGE_ENV}=NAME once; where a registry is reachable, `docker pull {image}` "
            "or build-docker --pull")


def ensure_base(client: Any, image: str, *, pull: bool, log: Log) -> None:
    """Stop before the build when the base image is not on the engine (the build would try a
    pull and fail at step 1 with a network error); ``pull`` pulls it first, saying so."""
    if image_present(client, image):
        return
    if not pull:
        raise BuildError(f"the base image {image} is not on this Docker engine",
                         hint=offline_hint(image))
    from docker.errors import DockerException

    log(f"pulling {image}")
    repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] \
        else (image, "", "latest")
    try:
        client.images.pull(repository, tag=tag or "latest")
    except DockerException as exc:
        raise BuildError(f"cannot pull the base image {image}: {scrub(str(exc))[:300]}",
                         hint=offline_hint(image)) from None


def probe_python(client: Any, image: str) -> str | None:
    """The ``major.minor`` of ``python3`` in a local ``image``; None if absent or unknown."""
    from docker.errors import DockerException

    if not image_present(client, image):
        return None
    container = None
    try:  # create + start, not run(remove=True): that leaves the container when start fails
        container = client.containers.create(
            image, ["-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            entrypoint=["python3"], network_mode="none",
        )
        container.start()
        if container.wait(timeout=120).get("StatusCode") != 0:
            return None
        text = container.logs(stdout=True, stderr=False).decode("utf-8", "replace").strip()
    except DockerException:
        return None
    finally:
        if container is not None:
            try:
                container.remove(force=True)
            except DockerException:
                pass
    return text if re.fullmatch(r"3\.\d+", text) else None


def _hint(text: str) -> str:
    for needle, hint in _HINTS:
        if needle.lower() in text.lower():
            return hint
    return "read the step's log above; rerun with --debug for the full build log"


class _Steps:
    """Follows the build stream: step timings, cache hits, the current step's output."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.current: str | None = None
        self.number = 0
        self.total = 0
        self.cached = 0
        self.started = time.monotonic()
        self.lines: list[str] = []
        self.image_id: str | None = None

    def _close(self) -> None:
        if self.current is not None:
            took = time.monotonic() - self.started
            cached = " (cached)" if any("Using cache" in ln for ln in self.lines) else ""
            self.cached += bool(cached)
            self.log(f"  step {self.number}/{self.total} {took:6.1f} s{cached}  {self.current}")

    def feed(self, chunk: dict[str, Any]) -> None:
        if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
            self.image_id = chunk["aux"]["ID"]
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            raise self.failure(str(detail))
        for line in str(chunk.get("stream", "")).splitlines():
            match = _STEP.match(line.strip())
            if match:
                self._close()
                self.number, self.total = int(match[1]), int(match[2])
                self.current = scrub(match[3])[:100]
                self.started = time.monotonic()
                self.lines = []
            elif line.strip():
                self.lines.append(line.rstrip())
                if not self.image_id and line.startswith("Successfully built "):
                    self.image_id = line.split()[-1]

    def finish(self) -> None:
        self._close()

    def failure(self, detail: str) -> BuildError:
        tail = "\n".join(scrub(ln) for ln in self.lines[-_TAIL_LINES:])
        where = f"step {self.number}/{self.total} ({self.current})" if self.current else "start"
        text = f"{tail}\n{detail}"
        message = f"image build failed at {where}: {scrub(detail.strip())[:400]}"
        if tail:
            message += f"\n--- last lines of the step's log ---\n{tail}"
        return BuildError(message, hint=_hint(text))


def run_build(
    client: Any,
    directory: Path,
    *,
    tag: str,
    network_mode: str = "none",
    no_cache: bool = False,
    platform: str | None = None,
    log: Log = lambda _m: None,
) -> tuple[str, int, int]:
    """Build ``directory`` as ``tag``; return (image id, cached steps, total steps)."""
    from docker.errors import APIError

    steps = _Steps(log)
    kwargs: dict[str, Any] = {}
    if platform:
        kwargs["platform"] = platform
    try:
        stream: Iterable[dict[str, Any]] = client.api.build(
            path=str(directory), tag=tag, network_mode=network_mode, nocache=no_cache, rm=True,
            forcerm=True, pull=False, decode=True, **kwargs,
        )
        for chunk in stream:
            steps.feed(chunk)
    except APIError as exc:
        raise steps.failure(str(exc.explanation or exc)) from None
    steps.finish()
    if not steps.image_id:
        raise steps.failure("the engine reported no image id")
    return steps.image_id, steps.cached, steps.total


GENERIC_NOTE = ("a generic image (no -m) holds mldeploy's runtime only: a model that needs a "
                "library (scikit-learn, xgboost, ...) fails to load in it with 'No module named "
                "...'; add it with --requirement (e.g. --requirement scikit-learn==1.5.2) or bake "
                "the model in with -m")


def build_docker(
    model_uri: str | None = None,
    name: str = "mldeploy-model",
    *,
    push_to: str | None = None,
    push_region: str | None = None,
    keep_context: str | None = None,
    pull: bool = False,
    log: Log | None = None,
    **options: Any,
) -> BuildResult:
    """Build the serving image of ``model_uri`` (None: a generic image serving ``/opt/ml/model``).

    ``options`` are :class:`ImageOptions` fields (``engine``, ``base_image``, ``env_manager``,
    ``platform``, ``python_version``, ``extra_requirements``, ``labels``, ``network_mode``,
    ``no_cache``, ``cache_dir``, ``mldeploy_wheel``, ``include_dotfiles``). ``push_to`` pushes
    the image to that repository URI afterwards (see :func:`push_image`; ``push_region`` is its
    AWS region); ``keep_context`` keeps the build context in that directory. A base image that
    is not on the engine stops the build before it starts, unless ``pull`` (then it is pulled,
    with a ``pulling IMAGE`` line). A remote model is downloaded once and removed afterwards.
    Raises ``BuildError`` (resolution, build, push), ``ConfigError``, ``ModelUriError``.
    """
    say: Log = log or (lambda _m: None)
    labels = options.pop("labels", ())
    if isinstance(labels, dict):
        labels = tuple(labels.items())
    extra = tuple(options.pop("extra_requirements", ()) or ())
    opts = ImageOptions(model_uri=model_uri, name=name, labels=tuple(labels),
                        extra_requirements=extra, **options)
    if opts.base_image is None and default_base_image():
        opts = dataclasses.replace(opts, base_image=default_base_image())
        say(f"base image {opts.base_image} (from ${BASE_IMAGE_ENV})")
    started = time.monotonic()
    client = docker_client()
    base_python = None
    if opts.base_image:
        ensure_base(client, opts.base_image, pull=pull, log=say)
        base_python = probe_python(client, opts.base_image)
        if base_python:
            say(f"base image {opts.base_image} has Python {base_python}")
        if base_python and opts.python_version and opts.python_version != base_python:
            raise ConfigError(
                f"base image {opts.base_image} has Python {base_python}, not "
                f"{opts.python_version}",
                hint="drop --python-version (the base image's is used) or pass a matching one",
            )
    work = Path(keep_context) if keep_context else Path(tempfile.mkdtemp(prefix="mldeploy-ctx-"))
    try:
        with contextlib.ExitStack() as stack:
            facts = None
            if opts.model_uri is not None:
                from mldeploy.model_uri import materialize

                facts = requirements.read_model(stack.enter_context(materialize(opts.model_uri)))
            _, base_image = choose_base(opts, facts, base_python)
            if base_image != opts.base_image:  # the default (or $MLDEPLOY_BASE_IMAGE)
                ensure_base(client, base_image, pull=pull, log=say)
            if facts is None and not extra:
                say(f"note: {GENERIC_NOTE}")
            ctx = assemble_facts(opts, work, facts, base_python, say)
        for note in ctx.notes:
            say(f"note: {note}")
        say(f"building {opts.name} from {ctx.base_image} (network: {opts.network_mode})")
        platform = opts.platform if opts.platform != "linux/amd64" else None
        image_id, cached, total = run_build(
            client, work, tag=opts.name, network_mode=opts.network_mode,
            no_cache=opts.no_cache, platform=platform, log=say,
        )
    finally:
        if not keep_context:
            shutil.rmtree(work, ignore_errors=True)
    image = client.images.get(image_id)
    seconds = time.monotonic() - started
    size = int(image.attrs.get("Size") or 0)
    say(f"built {opts.name} ({image.short_id}, {size / 1e6:.0f} MB) in {seconds:.1f} s")
    pushed = None
    if push_to:
        from .push import push_image

        pushed = push_image(opts.name, push_to, region=push_region, log=say)
    return BuildResult(
        image_id=image_id, tags=tuple(image.tags), size_bytes=size, seconds=seconds,
        python_version=ctx.python_version, base_image=ctx.base_image, engine=ctx.engine,
        requirements=ctx.requirements, notes=ctx.notes, labels=dict(ctx.labels),
        cached_steps=cached, total_steps=total, push=pushed,
    )
