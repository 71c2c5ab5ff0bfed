"""One decoder of the container's error body, one mapping to mldeploy's errors on every target,
one SDK-error mapping helper, and the exit codes the error classes carry."""

from __future__ import annotations

import orjson
import pytest

from mldeploy.container.errors import STATUS, decode_error, error_body
from mldeploy.errors import (
    EXIT_CODES,
    BuildError,
    ConfigError,
    DeploymentExistsError,
    DeploymentFailedError,
    DeploymentNotFoundError,
    InvocationError,
    MissingExtraError,
    MldeployError,
    PortInUseError,
    PredictionError,
    TargetError,
    TargetNotFoundError,
    invocation_error,
    map_exceptions,
)

RID = "0123456789abcdef0123456789abcdef"


# --- the decoder, next to the encoder ----------------------------------------------------------


@pytest.mark.parametrize("code", sorted(STATUS))
def test_decode_reads_back_what_error_body_writes(code):
    answer = decode_error(STATUS[code], error_body(code, "column 'f3' is missing", RID))
    assert (answer.status, answer.error_code, answer.message, answer.request_id) == (
        STATUS[code], code, "column 'f3' is missing", RID)


def test_decode_a_foreign_answer_keeps_its_text_without_a_traceback():
    html = b"<html><body>502 Bad Gateway</body></html>"
    assert decode_error(502, html).message == html.decode()
    assert decode_error(502, html).error_code is None and decode_error(502, html).model_fault
    tb = "boom\nTraceback (most recent call last):\n  File 'x.py', line 1\nValueError: x"
    assert decode_error(500, orjson.dumps({"message": tb})).message == "boom"
    assert decode_error(500, b"").message == "no message"
    assert decode_error(400, b"[1, 2]").message == "[1, 2]"  # JSON, but not the container's
    assert decode_error(400, "x" * 5000).message.endswith("...")  # clipped


# --- one mapping, the same on every target -------------------------------------------------------


def _sagemaker(name: str, status: int, body: bytes) -> MldeployError:
    from botocore.exceptions import ClientError

    from mldeploy.plugins.sagemaker.errors import invocation_error as sm_error

    exc = ClientError({
        "Error": {"Code": "ModelError",
                  "Message": f"Received server error ({status}) from primary with message "
                             f"\"{body.decode()}\""},
        "OriginalStatusCode": status, "OriginalMessage": body.decode(),
        "ResponseMetadata": {"RequestId": "aws-request-1", "HTTPStatusCode": 424}},
        "InvokeEndpoint")
    return sm_error(exc, name)


def _kubernetes(name: str, status: int, body: bytes) -> MldeployError:
    from mldeploy.plugins.kubernetes._traffic import _invocation_error

    return _invocation_error(name, status, body)


def _local(name: str, status: int, body: bytes) -> MldeployError:
    from mldeploy.plugins.local.errors import invocation_error as local_error

    return local_error(name, status, body)


TARGETS = {"sagemaker": _sagemaker, "kubernetes": _kubernetes, "local": _local}
EXPECTED = {"MODEL_ERROR": PredictionError, "REQUEST_TIMEOUT": PredictionError}


@pytest.mark.parametrize("code", sorted(STATUS))
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_the_same_container_answer_is_the_same_error_on_every_target(target, code):
    status = STATUS[code]
    body = error_body(code, "prediction took longer than 60 s", RID)
    err = TARGETS[target]("churn", status, body)
    assert type(err) is EXPECTED.get(code, InvocationError)
    assert (err.status, err.error_code, err.request_id) == (status, code, RID)
    assert err.message == f"the model on 'churn' answered {status} {code}: " \
                          "prediction took longer than 60 s"
    assert err.exit_code == (2 if status < 500 else 1)
    assert RID in (err.hint or "")  # where to look: the target's log, under this id


def test_504_request_timeout_is_a_prediction_error_everywhere():
    body = error_body("REQUEST_TIMEOUT", "the prediction did not finish within 60 s", RID)
    assert {name: type(f("m", 504, body)) for name, f in TARGETS.items()} == dict.fromkeys(
        TARGETS, PredictionError)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_an_answer_without_the_containers_code(target):
    err = TARGETS[target]("m", 502, b"<html>Bad Gateway</html>")
    assert type(err) is PredictionError and err.error_code is None and err.status == 502
    err = TARGETS[target]("m", 404, b"no such route")
    assert type(err) is InvocationError and err.exit_code == 2


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_credentials_and_tracebacks_never_reach_the_message(target):
    body = orjson.dumps({"error_code": "MODEL_ERROR", "request_id": RID,
                         "message": "cannot read s3://AKIAIOSFODNN7EXAMPLE:pw@bucket/x token=zqx7"
                                    "\nTraceback (most recent call last):\n  File 'secret.py'"})
    err = TARGETS[target]("m", 500, body)
    assert "AKIA" not in str(err) and "zqx7" not in str(err) and "secret.py" not in str(err)


def test_sagemaker_falls_back_to_the_aws_request_id():
    err = _sagemaker("m", 500, b"oops")
    assert err.request_id == "aws-request-1" and type(err) is PredictionError


def test_kubernetes_api_server_status_is_not_the_model():
    status = orjson.dumps({"kind": "Status", "message": "no endpoints available for service"})
    err = _kubernetes("m", 503, status)
    assert type(err) is InvocationError and "cannot reach the model" in err.message


def test_invocation_error_takes_a_decoded_answer():
    answer = decode_error(504, error_body("REQUEST_TIMEOUT", "slow"))
    err = invocation_error("m", 504, answer, hint="see the log")
    assert type(err) is PredictionError and err.hint == "see the log"


# --- map_exceptions ---------------------------------------------------------------------------


class Base(Exception):
    pass


class Child(Base):
    pass


def test_map_exceptions_most_specific_wins_and_the_sdk_error_is_not_chained():
    mapping = {Base: lambda e: TargetError(f"base {e}"), Child: lambda e: ConfigError(f"child {e}")}
    with pytest.raises(ConfigError, match="child x") as info, map_exceptions(mapping):
        raise Child("x")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(TargetError, match="base y"), map_exceptions(mapping):
        raise Base("y")


def test_map_exceptions_tuples_passthrough_and_error_classes():
    with pytest.raises(BuildError, match="z"), map_exceptions({(KeyError, OSError): BuildError}):
        raise OSError("z")
    with pytest.raises(ValueError), map_exceptions({KeyError: BuildError}):
        raise ValueError("not mapped")
    original = DeploymentFailedError("mine")
    with pytest.raises(DeploymentFailedError) as info, map_exceptions({Exception: BuildError}):
        raise original
    assert info.value is original


def test_local_docker_errors_through_the_helper():
    import requests
    from docker import errors as de

    from mldeploy.plugins.local.errors import docker_errors

    response = requests.Response()
    response.status_code = 409
    # an APIError is a requests HTTPError too: the engine answered, so it is translated
    with pytest.raises(TargetError, match="conflict on the Docker engine .name in use"), \
            docker_errors("create x"):
        raise de.APIError("Conflict", response=response, explanation="name in use")
    with pytest.raises(TargetError, match="did not answer"), docker_errors("list"):
        raise requests.ConnectionError("refused")
    with pytest.raises(MissingExtraError) as info, docker_errors("list"):
        raise ImportError("No module named 'docker'")
    assert info.value.hint == "pip install 'mldeploy[local]'" and info.value.exit_code == 2


def test_sagemaker_aws_errors_through_the_helper():
    from botocore.exceptions import ClientError, NoCredentialsError

    from mldeploy.plugins.sagemaker.errors import aws_errors

    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}},
                            "DescribeEndpoint")
    with pytest.raises(TargetError, match="throttling"), aws_errors("get churn"):
        raise throttled
    with pytest.raises(ConfigError, match="no AWS credentials"), aws_errors("get churn"):
        raise NoCredentialsError()
    missing = ClientError({"Error": {"Code": "ValidationException",
                                     "Message": "Could not find endpoint churn"}},
                          "DescribeEndpoint")
    with pytest.raises(DeploymentNotFoundError), aws_errors("get", name="churn"):
        raise missing
    with pytest.raises(KeyError), aws_errors("get"):
        raise KeyError("not an SDK error: a bug, left alone")


# --- exit codes by class -------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "code"), [
    (ConfigError("x"), 2),
    (TargetNotFoundError("x"), 2),
    (MissingExtraError("x"), 2),
    (PortInUseError("x"), 2),
    (DeploymentNotFoundError("x"), 2),
    (DeploymentExistsError("x"), 2),
    (InvocationError("x", status=400), 2),
    (InvocationError("x", status=503), 1),
    (PredictionError("x", status=500), 1),
    (DeploymentFailedError("x"), 1),
    (BuildError("x"), 1),
    (TargetError("x"), 1),
])
def test_exit_code_of_each_error_class_is_in_the_table(error, code):
    assert error.exit_code == code and code in EXIT_CODES


def test_a_deployment_that_failed_on_bad_input_exits_as_bad_input():
    assert DeploymentFailedError("x", cause=PortInUseError("port 80 in use")).exit_code == 2
    assert DeploymentFailedError("x", cause=TargetError("AWS said no")).exit_code == 1
    assert DeploymentFailedError("x").exit_code == 1
