"""The local target's test kit: what gateway processes a state directory has running.
Used by the fake-engine tests and the real-engine integration tests alike."""

from __future__ import annotations

from pathlib import Path

from mldeploy.plugins.local import _gateway_ctl as gw


def gateway_pids(state_dir: Path) -> set[int]:
    """Live gateway processes serving a state file under ``state_dir`` (read from /proc)."""
    out = set()
    prefix = f"{state_dir}/".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if gw.MODULE.encode() in cmd and any(a.startswith(prefix) for a in cmd):
            if gw.is_gateway_process(int(entry.name), Path(cmd[-2].decode()).stem):
                out.add(int(entry.name))
    return out


def gateway_inventory(state_dir: Path) -> set[str]:
    """The URLs of the endpoints whose gateway is up (per their state files), plus
    ``gateway-pid:N`` for any other gateway process of ``state_dir`` (an orphan)."""
    from mldeploy.plugins.local.target import LocalTarget

    store = LocalTarget({"state_dir": str(state_dir)}).store
    ids, known = set(), set()
    for name in store.names():
        state = store.load(name)
        if state is not None and gw.status(state) is not None:
            ids.add(state.url)
            known.add(state.gateway_pid)
    return ids | {f"gateway-pid:{p}" for p in gateway_pids(state_dir) - known}
