"""The local target's config (strict keys, sizes, limits) and its state files."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time

import pytest

from mldeploy.config import build_config, parse_assignments
from mldeploy.errors import ConfigError, DeploymentNotFoundError, TargetError, UsageError
from mldeploy.plugins.local import LocalTarget
from mldeploy.plugins.local._state import EndpointState, StateStore, VariantState
from mldeploy.plugins.local.config import (
    LocalConfig,
    check_name,
    default_state_dir,
    memory_bytes,
)
from mldeploy.registry import get_target


def cfg(*items: str) -> LocalConfig:
    return build_config(LocalConfig, parse_assignments(items))


def test_cli_options_become_typed_values():
    c = cfg("memory=2g", "cpus=1", "port=8080", "weight=0.25", "env.MLDEPLOY_THREADS=8",
            "rebuild=true")
    assert (c.memory, c.cpus, c.port, c.weight, c.rebuild) == ("2g", 1.0, 8080, 0.25, True)
    assert c.env == {"MLDEPLOY_THREADS": "8"}
    assert c.resolved_workers() == 1
    assert cfg("cpus=2.5").resolved_workers() == 3
    assert cfg("cpus=2", "workers=5").resolved_workers() == 5
    assert cfg().resolved_workers() is None


@pytest.mark.parametrize("text,expected", [("2g", 2 * 1024**3), ("512m", 512 * 1024**2),
                                           ("1.5G", int(1.5 * 1024**3)), ("1048576", 1048576),
                                           ("64mb", 64 * 1024**2)])
def test_memory_sizes(text, expected):
    assert memory_bytes(text) == expected


@pytest.mark.parametrize("items,message", [
    (("memroy=2g",), "did you mean 'memory'"),
    (("memory=lots",), "is not a size"),
    (("memory=1m",), "below Docker's minimum"),
    (("cpus=0",), "out of range"),
    (("port=70000",), "out of range"),
    (("host=localhost",), "not an IP address"),
    (("engine=tornado",), "is not one of"),
    (("variant_name=no spaces",), "not a valid name"),
    (("env.1BAD=x",), "not a valid environment variable"),
    (("weight=-1",), "out of range"),
])
def test_bad_values_are_refused_with_the_key(items, message):
    with pytest.raises(ConfigError, match=message):
        cfg(*items)


def test_the_registry_builds_the_target_from_cli_strings(tmp_path):
    t = get_target("local", {"state_dir": str(tmp_path), "cpus": "0.5"})
    assert isinstance(t, LocalTarget) and t.config.cpus == 0.5
    assert t.list() == []
    with pytest.raises(DeploymentNotFoundError):
        t.get("nothing-here")


def test_state_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("MLDEPLOY_LOCAL_STATE_DIR", str(tmp_path / "x"))
    assert default_state_dir() == tmp_path / "x"
    monkeypatch.delenv("MLDEPLOY_LOCAL_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "mldeploy" / "local"


@pytest.mark.parametrize("name", ["ok", "a-b-1", "A" * 63])
def test_valid_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "-a", "a_b", "a/b", "../etc", "A" * 64, "a b"])
def test_invalid_names_never_reach_a_file_or_container_name(name, tmp_path):
    with pytest.raises(UsageError):
        LocalTarget({"state_dir": str(tmp_path)}).get(name)


# -- state files ---------------------------------------------------------------------------


def _state(**kw) -> EndpointState:
    v = VariantState("primary", "models:/m/1", "img:1", "mldeploy-local-ep-primary-abc", 5000,
                     2.0, "sha256:1", 1.0)
    return EndpointState(name="ep", port=4000, variants=(v,), limits={"memory": "2g"},
                         token="t0", created=1.0, **kw)


def test_state_round_trips_and_is_private(tmp_path):
    store = StateStore(tmp_path / "s")
    state = _state()
    store.save(state)
    assert store.load("ep") == state
    assert oct(os.stat(store.path("ep")).st_mode & 0o777) == "0o600"
    assert store.names() == ["ep"] and store.load("other") is None
    assert state.url == "http://127.0.0.1:4000"
    assert dataclasses.replace(state, host="0.0.0.0").url == "http://127.0.0.1:4000"
    assert dataclasses.replace(state, port=0).url is None
    assert store.remove("ep") is True and store.remove("ep") is False


def test_state_ignores_unknown_keys_but_refuses_other_versions(tmp_path):
    store = StateStore(tmp_path)
    data = json.loads(_state().to_json())
    data["added_later"] = 1
    data["variants"][0]["also_later"] = 2
    store.path("ep").write_text(json.dumps(data))
    assert store.load("ep") == _state()
    data["version"] = 99
    store.path("ep").write_text(json.dumps(data))
    with pytest.raises(TargetError, match="unknown state version 99"):
        store.load("ep")
    store.path("ep").write_text("{truncated")
    with pytest.raises(TargetError) as info:
        store.load("ep")
    assert "mldeploy delete" in info.value.hint


def test_a_save_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    store = StateStore(tmp_path)
    store.save(_state())

    def boom(*_a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        store.save(_state(generation=5))
    assert store.load("ep") == _state()
    assert [p.name for p in tmp_path.iterdir()] == ["ep.json"]


def test_the_lock_serialises_operations_on_one_endpoint(tmp_path):
    store = StateStore(tmp_path)
    order: list[str] = []
    with store.lock("ep"):
        assert store.busy("ep")
        t = threading.Thread(target=lambda: _take(store, order))
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join(5)
    assert order == ["first done", "second"]
    assert not store.busy("ep")
    with store.lock("other"):
        assert not store.busy("ep")


def _take(store: StateStore, order: list[str]) -> None:
    with store.lock("ep"):
        order.append("second")


def test_a_lock_held_too_long_is_an_error_not_a_hang(tmp_path):
    store = StateStore(tmp_path)
    with store.lock("ep"):
        errors: list[Exception] = []

        def other():
            try:
                with store.lock("ep", timeout=0.2):
                    pass
            except TargetError as exc:
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join(5)
    assert errors and "busy" in str(errors[0])
