"""The target's side of the gateway: start the process, ask its status, reload, stop it.

A gateway is identified by its state: it answers ``/-/status`` on the state's port only with the
state's token, so a port reused by something else (after a restart) never looks like it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mldeploy.errors import PortInUseError, TargetError
from mldeploy.plugins.local._state import EndpointState

MODULE = "mldeploy.plugins.local.gateway"


def _request(state: EndpointState, method: str, path: str,
             timeout: float = 5.0) -> dict[str, Any] | None:
    """A control request; None if nothing (or not this gateway) answers."""
    if not state.port:
        return None
    conn = http.client.HTTPConnection(state.client_host, state.port, timeout=timeout)
    try:
        conn.request(method, path, headers={"X-Mldeploy-Token": state.token,
                                            "Content-Length": "0"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        data = json.loads(body)
        return data if isinstance(data, dict) and data.get("name") == state.name else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def status(state: EndpointState, timeout: float = 2.0) -> dict[str, Any] | None:
    """The gateway's status (routes, requests in flight per container), or None if down."""
    return _request(state, "GET", "/-/status", timeout)


def reload(state: EndpointState) -> dict[str, Any]:
    """Make the gateway re-read its state file; return its status at the new generation."""
    answer = _request(state, "POST", "/-/reload", timeout=10.0)
    if answer is None or answer.get("generation") != state.generation:
        raise TargetError(f"the gateway of {state.name!r} did not take the new routes",
                          hint="mldeploy get --target local shows its state")
    return answer


def start(state: EndpointState, state_file: Path, log_file: Path,
          timeout: float = 30.0) -> tuple[int, int]:
    """Start the gateway for ``state_file`` detached; return (port, pid) once it listens."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", MODULE, "--state", str(state_file)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, close_fds=True,
            start_new_session=True, cwd="/",
        )
    assert proc.stdout is not None
    line = b""
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while not line.endswith(b"\n") and time.monotonic() < deadline:
                if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    chunk = os.read(proc.stdout.fileno(), 256)
                    if not chunk:
                        break
                    line += chunk
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    finally:
        proc.stdout.close()
    parts = line.decode("ascii", "replace").split()
    if len(parts) != 3 or parts[0] != "READY":
        tail = _tail(log_file)
        cls = PortInUseError if "Address already in use" in tail else TargetError
        raise cls(f"the gateway of {state.name!r} did not start"
                          + (f": {tail}" if tail else ""),
                          hint=f"see {log_file}; -C port=... picks another port")
    return int(parts[1]), int(parts[2])


def wait_ready(state: EndpointState, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = status(state)
        if answer is not None:
            return answer
        if time.monotonic() > deadline:
            raise TargetError(f"the gateway of {state.name!r} does not answer on {state.url}")
        time.sleep(0.05)


def stop(state: EndpointState, timeout: float = 15.0) -> bool:
    """Stop the gateway (control request, else SIGTERM to its pid if that is still our gateway
    process); True if one was running."""
    was_up = _request(state, "POST", "/-/shutdown") is not None
    if not was_up and is_gateway_process(state.gateway_pid, state.name):
        with contextlib.suppress(OSError):
            os.kill(state.gateway_pid, signal.SIGTERM)
        was_up = True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (
            status(state, 0.5) is not None or is_gateway_process(state.gateway_pid, state.name)):
        time.sleep(0.05)
    if is_gateway_process(state.gateway_pid, state.name):
        with contextlib.suppress(OSError):
            os.kill(state.gateway_pid, signal.SIGKILL)
    return was_up


def is_gateway_process(pid: int, name: str) -> bool:
    """True if ``pid`` is a live (not zombie) gateway process of the endpoint ``name``."""
    if pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return MODULE.encode() in cmdline and any(
        arg.endswith(f"/{name}.json".encode()) for arg in cmdline)


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.split("] ", 1)[-1] for line in text[-lines:])


__all__ = ["is_gateway_process", "reload", "start", "status", "stop", "wait_ready"]
