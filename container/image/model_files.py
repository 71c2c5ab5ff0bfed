"""Which of a model directory's files go into an image, and with which modes.

Only the model's own files: ``__pycache__`` and (unless ``include_dotfiles``) every name starting
with ``.`` are left out (``.env``, ``.git/``, editor files); paths matched by the model's
``.mldeployignore`` are left out too. A symlink whose target lies outside the model directory is
refused (its target is not the model's to publish); one pointing inside is copied as the file it
names.

Modes: files go in owned by root with group 10001 (the image's user): the owner's read and execute
bits are given to the group and write bits are dropped for group and others, so ``0644`` stays
``0644``, ``0755`` stays ``0755`` and ``0600`` becomes ``0640`` — readable by the server, never
made world-readable. Directories are ``0755``.

``.mldeployignore`` is gitignore syntax. With ``pathspec`` installed it is read by pathspec's
``GitIgnoreSpec``; otherwise this subset is understood: ``#`` comments and blank lines, ``!``
negation (the last matching line wins), a trailing ``/`` (directories only), a leading or inner
``/`` anchors the pattern to the model directory, a pattern without ``/`` matches a name at any
depth, and ``*``, ``?``, ``[...]`` as :mod:`fnmatch` has them (``**`` matches like ``*``). A
directory that is left out takes everything below it along.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mldeploy.errors import ConfigError

IGNORE_FILE = ".mldeployignore"
APP_GID = 10001
DIR_MODE = 0o755
_ALWAYS_SKIPPED = ("__pycache__",)


@dataclass(frozen=True)
class ModelFile:
    """One file of the model as it goes into the image."""

    rel: str  # posix path below the model directory
    source: Path  # the file to read (a symlink's target inside the model directory)
    mode: int  # its permission bits in the image


def image_mode(mode: int) -> int:
    """The permission bits a file with ``mode`` gets in the image (see the module doc)."""
    keep = mode & 0o755  # owner rwx, group/others r-x; no setuid/setgid/sticky, no group write
    return keep | (mode & 0o400) >> 3 | (mode & 0o100) >> 3


def _fallback_matcher(lines: list[str]) -> Callable[[str, bool], bool]:
    rules: list[tuple[bool, bool, bool, str]] = []  # (negate, dir_only, anchored, pattern)
    for raw in lines:
        line = raw.rstrip("\n").rstrip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        if line.startswith("\\"):
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.strip("/") if dir_only else line.lstrip("/") if line.startswith("/") else line
        anchored = "/" in line or raw.lstrip("!").startswith("/")
        line = line.replace("**/", "*/").replace("/**", "/*").replace("**", "*")
        if line:
            rules.append((negate, dir_only, anchored, line))

    def ignored(rel: str, is_dir: bool) -> bool:
        result = False
        name = PurePosixPath(rel).name
        for negate, dir_only, anchored, pattern in rules:
            if dir_only and not is_dir:
                continue
            target = rel if anchored else name
            if fnmatch.fnmatchcase(target, pattern):
                result = not negate
        return result

    return ignored


def ignore_matcher(model_dir: Path) -> Callable[[str, bool], bool]:
    """``ignored(rel, is_dir)`` for the model's ``.mldeployignore`` (nothing ignored without)."""
    path = Path(model_dir) / IGNORE_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return lambda _rel, _is_dir: False
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the model's {IGNORE_FILE}: {type(exc).__name__}",
                          hint="make it a readable UTF-8 text file") from None
    try:
        from pathspec import GitIgnoreSpec
    except ImportError:
        return _fallback_matcher(lines)
    spec = GitIgnoreSpec.from_lines(lines)
    return lambda rel, is_dir: spec.match_file(rel + "/" if is_dir else rel)


def select(model_dir: Path, *, include_dotfiles: bool = False) -> tuple[ModelFile, ...]:
    """The files of ``model_dir`` that go into an image, sorted by path. Raises ``ConfigError``
    for a symlink out of the model directory (or a loop)."""
    root = Path(model_dir).resolve()
    ignored = ignore_matcher(root)
    out: list[ModelFile] = []

    def outside(entry: Path, rel: str) -> ConfigError:
        return ConfigError(
            f"the model file {rel} is a symlink to {os.readlink(entry)}, outside the model "
            "directory: refusing to copy it into the image",
            hint=f"copy the file into the model directory, or leave it out with a line "
            f"'{rel}' in {IGNORE_FILE}")

    def walk(directory: Path, prefix: str, seen: frozenset[Path]) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            raise ConfigError(f"cannot read {prefix or '.'} in the model: {exc.strerror}",
                              hint="check the model directory's permissions") from None
        for entry in entries:
            rel = f"{prefix}{entry.name}"
            if entry.name in _ALWAYS_SKIPPED or (rel == IGNORE_FILE):
                continue
            if entry.name.startswith(".") and not include_dotfiles:
                continue
            path = Path(entry.path)
            real = path.resolve() if entry.is_symlink() else path
            is_dir = real.is_dir()
            if ignored(rel, is_dir):
                continue
            if entry.is_symlink():
                if not real.exists():
                    raise ConfigError(f"the model file {rel} is a broken symlink",
                                      hint=f"fix it or leave it out in {IGNORE_FILE}")
                if real != root and root not in real.parents:
                    raise outside(path, rel)
            if is_dir:
                if real in seen:
                    raise ConfigError(f"the model directory {rel} is a symlink loop",
                                      hint=f"remove the link or leave it out in {IGNORE_FILE}")
                walk(real, rel + "/", seen | {real})
            elif real.is_file():
                out.append(ModelFile(rel, real, image_mode(stat.S_IMODE(real.stat().st_mode))))

    walk(root, "", frozenset({root}))
    return tuple(out)


def digest(files: Iterable[ModelFile]) -> str:
    """sha256 over each file's path, image mode and content (what the image's model layer is)."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.rel}\0{f.mode:o}\0".encode())
        with open(f.source, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def copy(files: Iterable[ModelFile], dst: Path) -> None:
    """Write ``files`` under ``dst`` with their image modes (copies: never hard links, whose
    mode is shared with the original)."""
    dst.mkdir(parents=True, exist_ok=True)
    os.chmod(dst, DIR_MODE)
    for f in files:
        target = dst / f.rel
        if not target.parent.exists():
            target.parent.mkdir(parents=True)
            for parent in [target.parent, *target.parent.parents]:
                if parent == dst:
                    break
                os.chmod(parent, DIR_MODE)
        shutil.copyfile(f.source, target)
        os.chmod(target, f.mode)


__all__ = ["APP_GID", "IGNORE_FILE", "ModelFile", "copy", "digest", "ignore_matcher",
           "image_mode", "select"]
