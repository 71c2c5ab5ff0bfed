import importlib.metadata as md
import subprocess
import sys

import pytest

from mldeploy.errors import TargetNotFoundError, UsageError
from mldeploy.registry import GROUP, Registry, available_targets, parse_target_spec
from mldeploy.testing.memory import MemoryTarget


def ep(name, value):
    return md.EntryPoint(name=name, value=value, group=GROUP)


@pytest.mark.parametrize("spec,name,location", [
    ("sagemaker", "sagemaker", None),
    ("sagemaker:/us-east-1", "sagemaker", "us-east-1"),
    ("SageMaker:eu-west-1", "sagemaker", "eu-west-1"),
    ("kubernetes:/ctx/ns", "kubernetes", "ctx/ns"),
    ("local:/", "local", None),
])
def test_parse_target_spec(spec, name, location):
    s = parse_target_spec(spec)
    assert (s.name, s.location) == (name, location)


@pytest.mark.parametrize("spec", ["", ":/x", "9lives", "a b"])
def test_bad_spec_is_usage_error(spec):
    with pytest.raises(UsageError, match="NAME:/LOCATION"):
        parse_target_spec(spec)


def test_installed_sagemaker_entry_point_is_listed():
    assert "sagemaker" in available_targets()


def test_entry_point_loads_target_with_location_and_config():
    reg = Registry([ep("memory", "mldeploy.testing.memory:MemoryTarget")])
    t = reg.get("memory:/somewhere", {"replicas": "3"})
    assert isinstance(t, MemoryTarget)
    assert t.location == "somewhere" and t.config.replicas == 3


def test_unknown_target_lists_known_ones_and_nearest():
    reg = Registry([ep("memory", "mldeploy.testing.memory:MemoryTarget"),
                    ep("sagemaker", "mldeploy.plugins.sagemaker:SageMakerTarget")])
    with pytest.raises(TargetNotFoundError) as info:
        reg.get("sagemakr")
    assert "did you mean 'sagemaker'" in str(info.value)
    assert "memory, sagemaker" in info.value.hint
    assert info.value.exit_code == 2


def test_missing_dependency_gives_pip_command():
    # the entry point's module imports a package that is not installed
    dist = md.distribution("mldeploy")
    missing = md.EntryPoint(name="sagemaker", value="mldeploy_no_such_module_x:T", group=GROUP)
    missing = missing._for(dist) if hasattr(missing, "_for") else missing
    with pytest.raises(TargetNotFoundError) as info:
        Registry([missing]).get("sagemaker")
    assert "mldeploy_no_such_module_x" in info.value.message
    assert info.value.hint == "pip install 'mldeploy[sagemaker]'"


def test_entry_point_that_is_not_a_target_is_refused():
    with pytest.raises(TargetNotFoundError, match="not a mldeploy Target"):
        Registry([ep("odd", "json:dumps")]).get("odd")


def test_importing_the_core_imports_no_plugin_and_no_sdk():
    code = ("import sys, mldeploy, mldeploy.api, mldeploy.registry, mldeploy.target, "
            "mldeploy.config, mldeploy._cli_deploy, mldeploy.testing\n"
            "from mldeploy.registry import available_targets\n"
            "assert 'sagemaker' in available_targets()\n"
            "bad = [m for m in ('boto3', 'botocore', 'moto', 'mldeploy.plugins.sagemaker', "
            "'pytest', 'docker') if m in sys.modules]\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""



def test_sagemaker_is_imported_only_when_asked_for():
    code = ("import sys\nfrom mldeploy.registry import get_target_class\n"
            "assert 'mldeploy.plugins.sagemaker' not in sys.modules\n"
            "cls = get_target_class('sagemaker:/us-west-2')\n"
            "print(cls.__name__, 'boto3' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # boto3 itself waits for the first AWS call
    assert out.stdout.split() == ["SageMakerTarget", "False"]


def test_sagemaker_without_boto3_names_the_extra():
    code = ("import sys\nsys.modules['boto3'] = None\n"
            "from mldeploy.errors import TargetNotFoundError\n"
            "from mldeploy.registry import get_target\n"
            "try:\n    get_target('sagemaker')\n"
            "except TargetNotFoundError as e:\n    print(e.exit_code, e.message, '|', e.hint)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("2 the sagemaker target needs boto3, which is not installed | "
                                  "pip install 'mldeploy[sagemaker]'")
