"""The setup scripts must not take their caller down.

mmdebstrap sends SIGHUP to its whole process group when writing its tarball fails (say, `docker
import` died because no engine answers yet). On a clean machine that killed `.ci/run` itself
(exit 129, about 200 s in, during scripts/test.sh's background image build). These tests run the
real scripts with an mmdebstrap and a docker that fail the same way, the scripts in a session of
their own so a regression cannot kill pytest, and check that the scripts live to report the error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Exactly what mmdebstrap does when the tarball cannot be written (its `kill HUP => -getpgrp()`).
FAKE_MMDEBSTRAP = """#!/usr/bin/env perl
$SIG{HUP} = 'IGNORE';
kill HUP => -getpgrp();
exit 1;
"""
# An engine that answers `docker info` but whose `docker import` fails at once.
FAKE_DOCKER = """#!/bin/sh
case "$1" in
    info) exit 0 ;;
    import) echo "import refused" >&2; exit 1 ;;
    *) exit 1 ;;
esac
"""


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in {"mmdebstrap": FAKE_MMDEBSTRAP, "docker": FAKE_DOCKER}.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def _run(cmd: list[str], fake_bin: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}",
           "MLDEPLOY_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False, start_new_session=True)


def test_base_image_script_survives_mmdebstrap_hangup(fake_bin: Path, tmp_path: Path) -> None:
    proc = _run(["bash", "scripts/build-base-image.sh", "mldeploy-test-never:built"],
                fake_bin, tmp_path)
    assert proc.returncode != -signal.SIGHUP, "mmdebstrap's SIGHUP reached the script's group"
    assert proc.returncode == 1, proc.stderr
    assert "import refused" in proc.stderr


def test_compose_debian_image_survives_mmdebstrap_hangup(fake_bin: Path, tmp_path: Path) -> None:
    code = ("from mldeploy.plugins.compose.testing import debian_image, ImageUnavailable\n"
            "try:\n    debian_image()\n"
            "except ImageUnavailable as exc:\n    print('unavailable:', exc)\n")
    proc = _run([sys.executable, "-c", code], fake_bin, tmp_path)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert "unavailable: mmdebstrap/docker import failed" in proc.stdout
