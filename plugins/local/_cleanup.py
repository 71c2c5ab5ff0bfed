"""The local target's cleanup (``mldeploy cleanup``): remove what this user's mldeploy made on
the local Docker engine and no endpoint uses any more - never another user's, never anything in
use.

"This user's" is the local target's state directory (``-C state_dir``, else
``$MLDEPLOY_LOCAL_STATE_DIR``, else ``$XDG_STATE_HOME/mldeploy/local`` or
``~/.local/state/mldeploy/local``, as every local verb reads it): the target labels its images and
containers with ``io.mldeploy.local.home``, a hash of that directory. On a shared engine
``docker image prune -a --filter label=io.mldeploy.local=1`` would delete every user's model
images; this removes only

- model images labelled with this state directory's home that no container on the engine runs
  or keeps (any user's, stopped ones included) and no endpoint of this state directory names;
- containers labelled with this home whose endpoint has no state any more (left by a process
  that was killed), unless an operation on that endpoint is running now.

Images without a home label (built by an older mldeploy, or by ``build-docker``) are never
touched: they are counted as skipped. ``--dry-run`` lists what would go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Cleanup:
    """What a cleanup removed (or, dry, would remove), kept, and could not remove."""

    state_dir: str
    home: str
    dry_run: bool
    images: list[str] = field(default_factory=list)  # removed: "tag (id)"
    containers: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # ours, still used: "tag: why"
    skipped_unowned: int = 0  # mldeploy-local images of no home or another one
    failed: list[str] = field(default_factory=list)

    def text(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"state directory {self.state_dir} (home {self.home})"]
        lines += [f"{verb} image {i}" for i in self.images]
        lines += [f"{verb} container {c}" for c in self.containers]
        lines += [f"kept image {k}" for k in self.kept]
        lines += [f"could not remove {f}" for f in self.failed]
        if self.skipped_unowned:
            lines.append(f"left {self.skipped_unowned} mldeploy image(s) of other users or "
                         "state directories alone")
        if not (self.images or self.containers):
            lines.append("nothing to remove")
        return "\n".join(lines)


def _tag(image: Any) -> str:
    tags = list(getattr(image, "tags", None) or [])
    return f"{tags[0] if tags else '<untagged>'} ({image.id.split(':')[-1][:12]})"


def cleanup(target: Any, *, dry_run: bool = False) -> Cleanup:
    """Clean up after the local target ``target`` (its state directory, engine and home)."""
    from mldeploy.plugins.local._resources import (
        IMAGE_REPO,
        LABEL,
        LABEL_ENDPOINT,
        LABEL_HOME,
        endpoint_filter,
    )

    store, engine, home = target.store, target.engine, target.home
    result = Cleanup(str(store.dir), home, dry_run)
    client = engine.client
    names = set(store.names())
    named: dict[str, str] = {}  # image id or reference -> the endpoint naming it
    for name in names:
        state = store.load(name)
        for v in state.variants if state else ():
            for ref in (v.image_id, v.image):
                if ref:
                    named[ref] = name
    from mldeploy.plugins.local.errors import docker_errors

    with docker_errors("clean up the local engine"):
        users: dict[str, set[str]] = {}  # image id -> the containers (any user's) that have it
        for c in client.containers.list(all=True):
            users.setdefault((c.attrs or {}).get("Image", ""), set()).add(c.name)
        # Orphans: this home's containers whose endpoint has no state and no operation running.
        for info in engine.find(endpoint_filter(home)):
            endpoint = info.labels.get(LABEL_ENDPOINT, "")
            if endpoint in names or store.busy(endpoint):
                continue
            result.containers.append(info.name)
            for held in users.values():
                held.discard(info.name)
            if not dry_run and not engine.remove(info.name, stop_timeout=5):
                result.failed.append(f"container {info.name}")
        for image in client.images.list(filters={"label": f"{LABEL}=1"}):
            labels = (image.attrs or {}).get("Config", {}).get("Labels") or image.labels or {}
            tags = list(image.tags or [])
            if labels.get(LABEL_HOME) != home or (
                    tags and not all(t.startswith(f"{IMAGE_REPO}:") for t in tags)):
                result.skipped_unowned += 1
                continue
            user = min(users.get(image.id) or [""])
            endpoint = named.get(image.id) or next((named[t] for t in tags if t in named), None)
            if user or endpoint:
                why = f"endpoint {endpoint}" if endpoint else f"container {user}"
                result.kept.append(f"{_tag(image)}: used by {why}")
                continue
            result.images.append(_tag(image))
            if dry_run:
                continue
            try:
                client.images.remove(image.id, force=False, noprune=False)
            except Exception as exc:  # noqa: BLE001 - in use meanwhile: reported, not fatal
                from mldeploy.redact import redact

                result.images.pop()
                result.failed.append(f"image {_tag(image)} ({redact(exc, 200)})")
    return result


__all__ = ["Cleanup", "cleanup"]
