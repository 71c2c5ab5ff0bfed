"""The one redaction: URIs, headers and messages, and every place that used to have its own."""

from __future__ import annotations

import pytest

from mldeploy.redact import REDACTED, redact, redact_headers, redact_uri

URI = "file://admin:S3cr3tPass@localhost/models/churn"


@pytest.mark.parametrize(("text", "expected"), [
    ("https://alice:s3cret@pypi.corp.example/simple", "https://***@pypi.corp.example/simple"),
    ("https://ghp_tok3n@github.com/org/repo.git", "https://***@github.com/org/repo.git"),
    ("https://u:p@ss@host/x", "https://***@host/x"),  # an unencoded @ in the password
    ("Looking in indexes: https://u:p4ss@idx.example/simple, https://b:c@d/e",
     "Looking in indexes: https://***@idx.example/simple, https://***@d/e"),
    ("names host 'admin:S3cr3tPass@localhost'", "names host '***@localhost'"),
    ("did you mean file:///admin:S3cr3tPass@localhost/x?", "did you mean file:///***@localhost/x?"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "Authorization: [redacted]"),
    ("curl -H 'X-Api-Key: 12345678'", "curl -H 'X-Api-Key: [redacted]'"),
    ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG", "aws_secret_access_key=[redacted]"),
    ('{"password": "hunter2", "user": "bob"}', '{"password": "[redacted]", "user": "bob"}'),
    ("key AKIAIOSFODNN7EXAMPLE was refused", "key [redacted] was refused"),
    ("https://b.s3.amazonaws.com/m.tar?X-Amz-Signature=abc123&X-Amz-Date=1",
     "https://b.s3.amazonaws.com/m.tar?X-Amz-Signature=[redacted]&X-Amz-Date=1"),
    ("sending Bearer abcdefghijklmnop to the API", "sending Bearer [redacted] to the API"),
])
def test_redact(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "models:/churn/3", "runs:/0123/model", "s3://bucket/path/model", "/tmp/model",
    "registry.example/img:1.0@sha256:" + "a" * 64, "ssh over port 22", "column 'f3' is missing",
    "http://127.0.0.1:8080/invocations",
])
def test_redact_leaves_what_holds_no_credential(text):
    assert redact(text) == text


def test_redact_clips_after_masking():
    text = "https://u:" + "p" * 50 + "@host/" + "x" * 100
    out = redact(text, 40)
    assert len(out) == 40 and out.endswith("...") and "ppp" not in out


def test_headers():
    out = redact_headers({"Authorization": "Basic dXNlcjpwYXNz", "Cookie": "s=1",
                          "X-Amz-Security-Token": "FQoG", "Content-Type": "application/json",
                          "Location": "https://u:p@h/x"})
    assert out == {"Authorization": REDACTED, "Cookie": REDACTED, "X-Amz-Security-Token": REDACTED,
                   "Content-Type": "application/json", "Location": "https://***@h/x"}


def _call_sites():
    """Every place that had its own scrubber, now all calling this one."""
    from mldeploy.container.image import context, wheelhouse
    from mldeploy.plugins.kubernetes import errors as k8s_errors
    from mldeploy.plugins.kubernetes import manifests
    from mldeploy.plugins.local import errors as local_errors
    from mldeploy.plugins.sagemaker import errors as sm_errors

    return {"sagemaker.errors.scrub": sm_errors.scrub,
            "kubernetes.errors.scrub": k8s_errors.scrub,
            "kubernetes.manifests.scrub_uri": manifests.scrub_uri,
            "local.errors.scrub": local_errors.scrub,
            "image.wheelhouse.scrub": wheelhouse.scrub,
            "image.context._scrub_uri": context._scrub_uri}


@pytest.mark.parametrize("text", [URI, "token=abc123 and https://bob:hunter2@x/simple",
                                  "Authorization: Bearer abcdefghijkl"])
def test_every_former_copy_gives_the_same_answer(text):
    results = {name: fn(text) for name, fn in _call_sites().items()}
    assert set(results.values()) == {redact(text)}, results


def test_the_local_containers_label_has_no_password():
    from mldeploy.plugins.local._resources import LABEL_MODEL_URI, container_labels

    labels = container_labels("home", "churn", "primary", URI)
    assert labels[LABEL_MODEL_URI] == "file://***@localhost/models/churn"
    assert "S3cr3tPass" not in str(labels)


def test_the_image_label_and_annotations_use_the_same_rule():
    from mldeploy.plugins.kubernetes import manifests

    assert manifests.scrub_uri(URI) == redact_uri(URI) == "file://***@localhost/models/churn"


def test_azure_storage_uris_keep_their_container_but_not_credentials():
    from mldeploy.redact import redact

    uri = "wasbs://models@acct.blob.core.windows.net/churn/1"
    assert redact(uri) == uri  # the container names no credential
    assert redact("wasbs://models:KEY@acct.blob.core.windows.net/m") == (
        "wasbs://***@acct.blob.core.windows.net/m")
    assert redact("https://models@host/m") == "https://***@host/m"
