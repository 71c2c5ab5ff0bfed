"""What ``mldeploy cleanup`` relies on, without an engine (the cleanup itself runs on the real
engine in ``integration/test_cleanup_engine.py``)."""

from __future__ import annotations


def test_the_local_target_labels_its_images_with_its_home(tmp_path):
    """What cleanup relies on: the image the local target builds carries its home."""
    from mldeploy.config import build_config
    from mldeploy.plugins.local import _steps
    from mldeploy.plugins.local._resources import LABEL_HOME, home_id
    from mldeploy.plugins.local.config import LocalConfig
    from mldeploy.testing.conformance import example_model_dir

    seen = []

    class Engine:
        def image_id(self, ref):
            return None

        def build(self, request, log):
            seen.append(request)
            return "sha256:" + "0" * 64

    home = home_id(tmp_path)
    cfg = build_config(LocalConfig, {"state_dir": str(tmp_path)})
    _steps.ensure_image(Engine(), cfg, str(example_model_dir()), lambda _: None, home=home)
    assert seen[0].labels[LABEL_HOME] == home


def test_cleanup_is_a_registered_verb():
    from click.testing import CliRunner

    from mldeploy.cli import cli

    result = CliRunner().invoke(cli, ["cleanup", "--help"])
    assert result.exit_code == 0 and "never another user's" in " ".join(result.output.split())


# -- the cleanup's choices on a fake engine (the real one: integration/test_cleanup_engine.py)


class _Image:
    def __init__(self, iid, tags, labels):
        self.id, self.tags, self.labels = iid, tags, labels
        self.attrs = {"Config": {"Labels": labels}}


class _Container:
    def __init__(self, name, image_id, labels):
        self.name, self.labels = name, labels
        self.attrs = {"Image": image_id, "State": {"Status": "created"}}
        self.id, self.status = name, "created"


class _Client:
    """The docker SDK calls cleanup makes: images.list/remove, containers.list."""

    def __init__(self, images, containers):
        self._images, self._containers = images, containers
        self.removed: list[str] = []
        client = self

        class Images:
            def list(self, filters=None):
                key, _, value = filters["label"].partition("=")
                return [i for i in client._images if i.labels.get(key) == value]

            def remove(self, iid, force=False, noprune=False):
                assert not force
                client.removed.append(iid)
                client._images = [i for i in client._images if i.id != iid]

        class Containers:
            def list(self, filters=None, **_):
                wanted = dict(f.split("=", 1) for f in (filters or {}).get("label", []))
                return [c for c in client._containers
                        if all(c.labels.get(k) == v for k, v in wanted.items())]

            def get(self, name):
                return next(c for c in client._containers if c.name == name)

        self.images, self.containers = Images(), Containers()


def test_cleanup_honours_the_state_directory_setting_and_spares_the_rest(tmp_path, monkeypatch):
    from mldeploy.plugins.local import LocalTarget
    from mldeploy.plugins.local._cleanup import cleanup
    from mldeploy.plugins.local._client import Engine
    from mldeploy.plugins.local._resources import LABEL, LABEL_ENDPOINT, LABEL_HOME, home_id
    from mldeploy.plugins.local._state import EndpointState, VariantState

    monkeypatch.setenv("MLDEPLOY_LOCAL_STATE_DIR", str(tmp_path / "mine"))
    target = LocalTarget()  # the state directory from the environment, as every local verb
    me, them = home_id(tmp_path / "mine"), home_id(tmp_path / "theirs")
    assert target.home == me
    repo = "mldeploy-local-model:"
    images = [_Image("sha256:a", [repo + "a"], {LABEL: "1", LABEL_HOME: me}),
              _Image("sha256:b", [repo + "b"], {LABEL: "1", LABEL_HOME: me}),
              _Image("sha256:c", [repo + "c"], {LABEL: "1", LABEL_HOME: me}),
              _Image("sha256:d", [repo + "d"], {LABEL: "1", LABEL_HOME: them}),
              _Image("sha256:e", [repo + "e"], {LABEL: "1"}),
              _Image("sha256:f", ["mine:1"], {LABEL: "1", LABEL_HOME: me})]
    containers = [_Container("theirs-1", "sha256:c", {LABEL: "1", LABEL_HOME: them}),
                  _Container("mldeploy-local-gone-x", "sha256:a",
                             {LABEL: "1", LABEL_HOME: me, LABEL_ENDPOINT: "gone"})]
    client = _Client(images, containers)
    target._engine = Engine(client)
    target.engine.remove = lambda name, stop_timeout=10: client._containers.remove(
        client.containers.get(name)) or True
    target.store.save(EndpointState("churn", variants=(VariantState(
        "primary", "m", repo + "b", "mldeploy-local-churn-primary-1", 1),)))

    dry = cleanup(target, dry_run=True)
    assert dry.images == ["mldeploy-local-model:a (a)"] and client.removed == []
    assert dry.containers == ["mldeploy-local-gone-x"] and len(client._containers) == 2
    done = cleanup(target)
    assert client.removed == ["sha256:a"]  # b: an endpoint names it; c: theirs runs it
    assert [k.split(":")[1].split(" ")[0] for k in done.kept] == ["b", "c"]
    assert done.skipped_unowned == 3  # theirs, no home, and one not in mldeploy's repository
    assert [c.name for c in client._containers] == ["theirs-1"]
