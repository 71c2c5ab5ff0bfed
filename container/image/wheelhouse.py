"""Wheels for the image, made on the host: the build inside Docker has no index and no network.

:func:`download` runs ``pip download --only-binary=:all:`` for the image's Python and platform
(the caller's pip configuration, indexes and cache apply) into a wheelhouse cached under the cache
dir by a hash of its inputs. :func:`mldeploy_wheel` builds mldeploy's own wheel from its source
tree (cached by a hash of the sources; timestamps fixed so identical sources give identical bytes).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mldeploy.errors import BuildError

Log = Callable[[str], None]
_CACHE_VERSION = 1
_SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the earliest time a zip file can hold
_SOURCE_FILES = ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in", "README.md", "LICENSE")
_SOURCE_DIRS = ("src", "plugins", "container")


@dataclass(frozen=True)
class Wheelhouse:
    """A directory of wheels that satisfies ``requirements`` offline."""

    directory: Path
    wheels: tuple[str, ...]
    cached: bool


def scrub(text: str) -> str:
    """``text`` with credentials masked by the one redaction (:mod:`mldeploy.redact`)."""
    from mldeploy.redact import redact

    return redact(text)


def platform_tags(arch: str, glibc: tuple[int, int]) -> list[str]:
    """manylinux tags from glibc ``glibc`` down to 2.17 (pip does not expand ``manylinux_2_X``)."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 16, -1)]
    return tags + [f"manylinux2014_{arch}"]  # pip expands this one to manylinux2010/manylinux1


def _run_pip(args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               PIP_PROGRESS_BAR="off", SOURCE_DATE_EPOCH=_SOURCE_DATE_EPOCH)
    try:
        return subprocess.run(
            [sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=env,
            timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        raise BuildError(
            f"pip did not finish within {timeout:.0f} s",
            hint="check the connection to the package index (pip's own configuration applies)",
        ) from None


def download(
    lines: tuple[str, ...],
    *,
    python_version: str,
    arch: str,
    glibc: tuple[int, int],
    cache_dir: Path,
    refresh: bool = False,
    log: Log = lambda _m: None,
) -> Wheelhouse:
    """Resolve ``lines`` into binary wheels for CPython ``python_version`` on linux ``arch``."""
    key_src = json.dumps([_CACHE_VERSION, list(lines), python_version, arch, list(glibc)])
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    target = cache_dir / "wheelhouses" / key
    done = target / "COMPLETE"
    if done.is_file() and not refresh:
        wheels = tuple(sorted(p.name for p in target.glob("*.whl")))
        log(f"wheelhouse: {len(wheels)} wheels from the cache ({target})")
        return Wheelhouse(target, wheels, cached=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        reqs = tmp / "requirements.in"
        reqs.write_text("\n".join(lines) + "\n", encoding="utf-8")
        args = ["download", "--only-binary=:all:", "--implementation", "cp",
                "--python-version", python_version, "-d", str(tmp), "-r", str(reqs)]
        for tag in platform_tags(arch, glibc):
            args += ["--platform", tag]
        log(f"wheelhouse: resolving {len(lines)} requirements for CPython {python_version} "
            f"on manylinux {arch} with pip download")
        started = time.monotonic()
        proc = _run_pip(args, timeout=900)
        if proc.returncode != 0:
            raise explain_pip_failure(proc.stdout + "\n" + proc.stderr, python_version, arch)
        reqs.unlink()
        wheels = tuple(sorted(p.name for p in tmp.glob("*.whl")))
        (tmp / "COMPLETE").write_text("\n".join(wheels) + "\n", encoding="utf-8")
        if refresh and target.exists():
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:  # another build made the same wheelhouse meanwhile: use that one
            shutil.rmtree(tmp, ignore_errors=True)
        size = sum(p.stat().st_size for p in target.glob("*.whl"))
        log(f"wheelhouse: {len(wheels)} wheels, {size / 1e6:.0f} MB in "
            f"{time.monotonic() - started:.1f} s")
        return Wheelhouse(target, tuple(sorted(p.name for p in target.glob("*.whl"))), False)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def pip_wheel(python_version: str, cache_dir: Path, log: Log = lambda _m: None) -> Path:
    """A pip wheel for CPython ``python_version``: the build runs pip from it (``pip.whl/pip``)."""
    out = cache_dir / "tools" / f"pip-py{python_version}"
    found = sorted(out.glob("pip-*.whl")) if out.is_dir() else []
    if found:
        return found[-1]
    log(f"downloading pip for Python {python_version}")
    proc = _run_pip(["download", "--no-deps", "--only-binary=:all:", "--python-version",
                     python_version, "-d", str(out), "pip"], timeout=300)
    found = sorted(out.glob("pip-*.whl"))
    if proc.returncode != 0 or not found:
        raise explain_pip_failure(proc.stdout + "\n" + proc.stderr, python_version, "any")
    return found[-1]


def explain_pip_failure(output: str, python_version: str, arch: str) -> BuildError:
    """Turn pip's output into a BuildError that says which requirement failed and what to do."""
    text = scrub(output)
    where = f"CPython {python_version} on linux {arch}"
    missing = re.findall(r"No matching distribution found for (\S+)", text)
    if "ResolutionImpossible" in text or "conflicting dependencies" in text:
        cause = re.findall(r"^\s+(\S.* depends on \S.*)$", text, flags=re.M)
        detail = "; ".join(dict.fromkeys(cause[:6])) or "see pip's output in the log"
        return BuildError(
            f"the model's requirements conflict with each other or with mldeploy's runtime "
            f"({detail})",
            hint="relax the conflicting pin in the model's requirements.txt, or build with "
            "--env-manager local to use the versions installed here",
        )
    if missing:
        name = missing[-1]
        return BuildError(
            f"cannot resolve the model's requirements: no binary wheel of {name} for {where}",
            hint=f"images install wheels only: pin a version of {name.split('=')[0].split('<')[0]}"
            f" that publishes a wheel for {where}, or choose another --python-version or "
            "--base-image",
        )
    if re.search(r"NewConnectionError|Max retries exceeded|Could not fetch URL|"
                 r"Temporary failure in name resolution|ProxyError", text):
        return BuildError(
            "cannot reach the package index to download the image's wheels",
            hint="wheels are downloaded on this machine, not in the build: check its network "
            "and pip configuration (index-url, proxy, certificates)",
        )
    errors = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("ERROR")]
    detail = errors[-1][len("ERROR:"):].strip() if errors else "pip failed"
    return BuildError(
        f"cannot download the image's wheels for {where}: {detail[:300]}",
        hint="check the model's requirements; rerun with --debug for pip's full output",
    )


def _source_root() -> Path | None:
    """mldeploy's source tree when it is installed editable (or run from a checkout)."""
    try:
        dist = importlib.metadata.distribution("mldeploy")
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except (importlib.metadata.PackageNotFoundError, json.JSONDecodeError):
        direct = {}
    url = direct.get("url", "")
    if direct.get("dir_info", {}).get("editable") and url.startswith("file://"):
        root = Path(url[len("file://"):])
        if (root / "pyproject.toml").is_file():
            return root
    import mldeploy

    guess = Path(mldeploy.__file__).resolve().parents[2]
    found = (guess / "pyproject.toml").is_file() and (guess / "container").is_dir()
    return guess if found else None


def _source_files(root: Path) -> list[Path]:
    files = [root / n for n in _SOURCE_FILES if (root / n).is_file()]
    for top in _SOURCE_DIRS:
        for path in sorted((root / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append(path)
    return files


def mldeploy_wheel(cache_dir: Path, explicit: str | None = None, log: Log = lambda _m: None,
                   ) -> Path:
    """Return mldeploy's wheel: ``explicit``, else built from the source tree (cached)."""
    if explicit:
        path = Path(explicit).expanduser()
        if not (path.is_file() and path.name.startswith("mldeploy-") and path.suffix == ".whl"):
            raise BuildError(f"{explicit} is not a mldeploy wheel",
                             hint="pass the path of a mldeploy-*.whl file")
        return path
    root = _source_root()
    if root is None:
        return _download_self(cache_dir, log)
    files = _source_files(root)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    out = cache_dir / "mldeploy-wheels" / digest.hexdigest()[:20]
    found = sorted(out.glob("mldeploy-*.whl")) if out.is_dir() else []
    if found:
        return found[0]
    log(f"building mldeploy's wheel from {root}")
    with tempfile.TemporaryDirectory(prefix="mldeploy-src-") as tmp:
        src = Path(tmp) / "src"
        for path in files:  # a copy, so the build leaves nothing in the source tree
            dst = src / path.relative_to(root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dst)
        built = Path(tmp) / "dist"
        proc = _run_pip(["wheel", "--no-deps", "-q", "-w", str(built), str(src)], timeout=600)
        wheels = sorted(built.glob("mldeploy-*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = scrub(proc.stderr.strip())[-400:]
            raise BuildError(f"cannot build mldeploy's wheel from {root}: {tail}",
                             hint="fix the packaging error, or pass --mldeploy-wheel PATH")
        out.mkdir(parents=True, exist_ok=True)
        final = out / wheels[0].name
        shutil.copy2(wheels[0], final)
    return final


def _download_self(cache_dir: Path, log: Log) -> Path:
    version = importlib.metadata.version("mldeploy")
    out = cache_dir / "mldeploy-wheels" / f"release-{version}"
    found = sorted(out.glob("mldeploy-*.whl")) if out.is_dir() else []
    if found:
        return found[0]
    log(f"downloading mldeploy {version}'s wheel")
    proc = _run_pip(["download", "--no-deps", "--only-binary=:all:", "-d", str(out),
                     f"mldeploy=={version}"], timeout=300)
    found = sorted(out.glob("mldeploy-*.whl"))
    if proc.returncode != 0 or not found:
        raise BuildError(f"cannot find a wheel of mldeploy {version}",
                         hint="pass --mldeploy-wheel PATH (build one with `pip wheel --no-deps .`)")
    return found[0]
