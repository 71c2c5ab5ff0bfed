"""``mldeploy cleanup`` on the real (shared) Docker engine (issue #15, item 6): the README used
to say ``docker image prune -a --filter label=io.mldeploy.local=1``, which on a shared engine
deletes every user's model images. Cleanup removes only this state directory's images that no
endpoint and no container uses, and its orphaned containers - here next to the images other
users of this very engine have (``mldeploy-local-model:*`` of other state directories), which
must all survive.

The images are made from the offline base image with labels only (no RUN step: a second each),
tagged ``mldeploy-local-model:gitopstest-*``; the test removes what it made.
"""

from __future__ import annotations

import io
import json
import secrets
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

TAG = "mldeploy-local-model:gitopstest-"


def _image(client: Any, base: str, tag: str, labels: dict[str, str]) -> str:
    dockerfile = f"FROM {base}\n".encode()
    image, _ = client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, labels=labels,
                                   pull=False, rm=True, network_mode="none")
    return image.id


def _local_images(client: Any) -> dict[str, set[str]]:
    return {i.id: set(i.tags) for i in client.images.list(filters={"label": "io.mldeploy.local=1"})}


@pytest.fixture
def made(docker_engine):
    """Names of what the test creates; removed afterwards whatever happened."""
    things: dict[str, list[str]] = {"images": [], "containers": []}
    yield things
    for name in things["containers"]:
        try:
            docker_engine.containers.get(name).remove(force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
    for tag in things["images"]:
        try:
            docker_engine.images.remove(tag, force=True)
        except Exception:  # noqa: BLE001 - removed by the cleanup under test
            pass


def test_cleanup_removes_only_this_users_unused_images_and_orphans(
        docker_engine, base_image, tmp_path: Path, made, capsys):
    from mldeploy.cli import main
    from mldeploy.plugins.local import LocalTarget
    from mldeploy.plugins.local._resources import (
        LABEL,
        LABEL_ENDPOINT,
        LABEL_HOME,
        LABEL_VARIANT,
        home_id,
    )
    from mldeploy.plugins.local._state import EndpointState, VariantState

    mine, theirs = tmp_path / "alice", tmp_path / "bob"
    me, them = home_id(mine), home_id(theirs)
    run = secrets.token_hex(3)
    tags = {k: f"{TAG}{run}-{k}" for k in ("unused", "endpoint", "container", "bob", "legacy")}
    made["images"].extend(tags.values())
    ids = {
        "unused": _image(docker_engine, base_image, tags["unused"], {LABEL: "1", LABEL_HOME: me}),
        "endpoint": _image(docker_engine, base_image, tags["endpoint"],
                           {LABEL: "1", LABEL_HOME: me, "gitopstest": "endpoint"}),
        "container": _image(docker_engine, base_image, tags["container"],
                            {LABEL: "1", LABEL_HOME: me, "gitopstest": "container"}),
        "bob": _image(docker_engine, base_image, tags["bob"], {LABEL: "1", LABEL_HOME: them}),
        "legacy": _image(docker_engine, base_image, tags["legacy"],
                         {LABEL: "1", "gitopstest": "legacy"}),
    }
    assert len(set(ids.values())) == 5
    # An endpoint of alice's that names an image (its container stopped: only the state says so).
    alice = LocalTarget({"state_dir": str(mine)})
    alice.store.save(EndpointState("churn", variants=(VariantState(
        "primary", "models:/churn/1", tags["endpoint"], f"mldeploy-local-churn-primary-{run}",
        1, image_id=ids["endpoint"]),)))
    # A container of bob's running alice's image (another user's use of it: keep).
    user = f"gitopstest-{run}-bob"
    docker_engine.containers.create(tags["container"], command=["true"], name=user,
                                    labels={LABEL: "1", LABEL_HOME: them})
    made["containers"].append(user)
    # An orphan of alice's: its endpoint has no state any more (a killed process left it).
    orphan = f"mldeploy-local-gone-primary-{run}"
    docker_engine.containers.create(tags["unused"], command=["true"], name=orphan, labels={
        LABEL: "1", LABEL_HOME: me, LABEL_ENDPOINT: "gone", LABEL_VARIANT: "primary"})
    made["containers"].append(orphan)
    others_before = {i: t for i, t in _local_images(docker_engine).items()
                     if i not in ids.values()}

    main(["cleanup", "-C", f"state_dir={mine}", "--dry-run", "-o", "json"])
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] and dry["home"] == me
    assert [i.split(" ")[0] for i in dry["images"]] == [tags["unused"]]
    assert dry["containers"] == [orphan]
    assert docker_engine.images.get(tags["unused"])  # nothing removed yet
    assert docker_engine.containers.get(orphan)

    main(["cleanup", "-C", f"state_dir={mine}"])
    text = capsys.readouterr().out
    assert f"removed image {tags['unused']}" in text and f"removed container {orphan}" in text
    assert f"kept image {tags['endpoint']}" in text and "used by endpoint churn" in text
    assert f"kept image {tags['container']}" in text and f"used by container {user}" in text
    left = _local_images(docker_engine)
    assert ids["unused"] not in left
    for kept in ("endpoint", "container", "bob", "legacy"):
        assert ids[kept] in left, kept
    # Every other user's mldeploy image on this engine is still there.
    assert {i: t for i, t in left.items() if i in others_before} == others_before
    names = {c.name for c in docker_engine.containers.list(all=True)}
    assert orphan not in names and user in names
    # Bob's cleanup removes bob's image (unused) and nothing of alice's.
    main(["cleanup", "-C", f"state_dir={theirs}", "-o", "json"])
    bob = json.loads(capsys.readouterr().out)
    assert [i.split(" ")[0] for i in bob["images"]] == [tags["bob"]]
    assert ids["endpoint"] in _local_images(docker_engine)

