import enum
import json
from dataclasses import dataclass, field

import pytest

from mldeploy.config import (
    build_config,
    describe_config,
    load_config_file,
    merge,
    parse_assignments,
    to_dict,
)
from mldeploy.errors import ConfigError, UsageError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner:
    memory_size_in_mb: int = field(default=2048, metadata={"min": 1024, "max": 6144,
                                                           "step": 1024})
    max_concurrency: int = field(default=5, metadata={"min": 1, "max": 200})


@dataclass(frozen=True)
class Conf:
    instance_count: int = 1
    instance_type: str = "ml.m5.large"
    ratio: float = 0.5
    synchronous: bool = True
    color: Color = Color.RED
    env: dict[str, str] = field(default_factory=dict)
    subnets: list[str] = field(default_factory=list)
    inner: Inner | None = None
    budget: int | None = None

    def validate(self):
        if self.budget is not None and self.budget < self.instance_count:
            raise ConfigError("budget must be at least instance_count")


def test_parse_assignments_builds_nested_mappings():
    assert parse_assignments(["a=1", "b.c=x", "b.d=y=z", "e="]) == {
        "a": "1", "b": {"c": "x", "d": "y=z"}, "e": ""}


@pytest.mark.parametrize("bad", ["novalue", "=x", " =1"])
def test_parse_assignments_rejects_malformed(bad):
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments([bad])


def test_parse_assignments_rejects_value_and_section_clash():
    with pytest.raises(ConfigError, match="both"):
        parse_assignments(["a=1", "a.b=2"])


def test_defaults_come_from_the_dataclass():
    c = build_config(Conf, None)
    assert c == Conf() and c.instance_count == 1 and c.inner is None


def test_strings_are_converted_to_field_types():
    c = build_config(Conf, {"instance_count": "3", "ratio": "0.25", "color": "BLUE",
                            "env": '{"A": "1"}', "subnets": "s-1, s-2",
                            "inner": {"memory_size_in_mb": "3072"}, "budget": "7"})
    assert c.instance_count == 3 and c.ratio == 0.25 and c.color is Color.BLUE
    assert c.env == {"A": "1"} and c.subnets == ["s-1", "s-2"]
    assert c.inner == Inner(memory_size_in_mb=3072) and c.budget == 7


@pytest.mark.parametrize("text,value", [("true", True), ("True", True), ("1", True),
                                        ("yes", True), ("on", True), (" ON ", True),
                                        ("false", False), ("False", False), ("0", False),
                                        ("no", False), ("off", False)])
def test_booleans(text, value):
    # the README: "booleans parse true/false, 1/0, yes/no and on/off"
    assert build_config(Conf, {"synchronous": text}).synchronous is value


def test_readme_names_every_boolean_spelling():
    from pathlib import Path

    from mldeploy.config import _FALSE, _TRUE

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    claimed = "booleans\nparse `true/false`, `1/0`, `yes/no` and `on/off`"
    assert claimed in readme
    assert _TRUE == {"true", "1", "yes", "on"} and _FALSE == {"false", "0", "no", "off"}


@pytest.mark.parametrize("bad", ["ture", "2", "y", "enabled", ""])
def test_bad_boolean_is_an_error(bad):
    with pytest.raises(ConfigError, match="not a boolean") as info:
        build_config(Conf, {"synchronous": bad})
    assert info.value.hint == "use true/false, 1/0, yes/no or on/off"


def test_unknown_key_names_nearest_valid_key():
    with pytest.raises(ConfigError) as info:
        build_config(Conf, {"instance_cout": "2"})
    assert "did you mean 'instance_count'" in str(info.value)
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2


def test_unknown_nested_key_names_nearest_with_prefix():
    with pytest.raises(ConfigError, match=r"did you mean 'inner.max_concurrency'"):
        build_config(Conf, {"inner": {"max_concurency": 3}})


def test_unknown_key_without_close_match_lists_valid_keys():
    with pytest.raises(ConfigError) as info:
        build_config(Conf, {"zzz": 1})
    assert "did you mean" not in str(info.value) and "instance_type" in info.value.hint


@pytest.mark.parametrize("cfg,match", [
    ({"instance_count": "two"}, "whole number"),
    ({"instance_count": 2.5}, "whole number"),
    ({"instance_count": True}, "not a boolean"),
    ({"inner": {"memory_size_in_mb": "1500"}}, "multiple of 1024"),
    ({"inner": {"memory_size_in_mb": "8192"}}, "out of range"),
    ({"inner": {"max_concurrency": 0}}, "out of range"),
    ({"color": "gren"}, "not valid"),
    ({"env": "{bad json"}, "not valid JSON"),
    ({"env": "plain"}, "must be a mapping"),
    ({"budget": "0"}, "at least instance_count"),
])
def test_bad_values_are_errors(cfg, match):
    with pytest.raises(ConfigError, match=match):
        build_config(Conf, cfg)


def test_optional_accepts_none_strings():
    assert build_config(Conf, {"budget": "none"}).budget is None


def test_typed_instance_passes_through_validated():
    with pytest.raises(ConfigError):
        build_config(Conf, Conf(budget=0, instance_count=1))
    c = Conf(instance_count=2)
    assert build_config(Conf, c) is c


@pytest.mark.parametrize("suffix,text", [
    (".json", '{"instance_count": 4, "inner": {"max_concurrency": 9}}'),
    (".yaml", "instance_count: 4\ninner:\n  max_concurrency: 9\n"),
    (".toml", "instance_count = 4\n[inner]\nmax_concurrency = 9\n"),
])
def test_config_files(tmp_path, suffix, text):
    p = tmp_path / f"c{suffix}"
    p.write_text(text)
    c = build_config(Conf, load_config_file(p))
    assert c.instance_count == 4 and c.inner.max_concurrency == 9


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON") as info:
        load_config_file(bad)
    assert "Traceback" not in str(info.value)
    (tmp_path / "c.ini").write_text("x")
    with pytest.raises(ConfigError, match="unknown format"):
        load_config_file(tmp_path / "c.ini")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config_file(tmp_path / "list.yaml")


def test_merge_later_layers_win_deeply():
    assert merge({"a": 1, "n": {"x": 1, "y": 2}}, None, {"n": {"y": 3}, "b": 2}) == {
        "a": 1, "b": 2, "n": {"x": 1, "y": 3}}


def test_to_dict_and_describe():
    c = build_config(Conf, {"color": "blue", "inner": {}})
    d = to_dict(c)
    assert json.loads(json.dumps(d))["color"] == "blue" and d["inner"]["memory_size_in_mb"] == 2048
    keys = {k["key"]: k for k in describe_config(Conf)}
    assert keys["instance_count"]["default"] == 1 and keys["env"]["default"] == {}


def test_describe_flattens_sections_to_dotted_keys_with_their_constraints():
    keys = {k["key"]: k for k in describe_config(Conf)}
    assert "inner" not in keys
    assert keys["inner.memory_size_in_mb"] == {
        "key": "inner.memory_size_in_mb", "type": "int", "default": 2048, "help": "",
        "min": 1024, "max": 6144, "step": 1024}
    assert keys["color"]["type"] == "one of red, blue" and keys["color"]["default"] == "red"
    assert keys["budget"]["type"] == "int | None" and keys["subnets"]["type"] == "list[str]"
    assert keys["env"]["type"] == "dict[str, str]" and keys["synchronous"]["type"] == "bool"
