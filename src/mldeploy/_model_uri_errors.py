"""Why a model URI did not resolve: SDK exceptions (MLflow, botocore, HTTP) met while resolving
one become mldeploy's typed errors with a hint, asking the tracking server or registry which part
of a ``runs:/`` / ``models:/`` URI is missing. Messages never carry URI credentials (``safe``).

Private to :mod:`mldeploy.model_uri`; nothing here runs at import time.
"""

from __future__ import annotations

import logging
import re
import warnings
from typing import NamedTuple

from mldeploy.errors import (
    ModelNotFoundError,
    ModelUriError,
    NotAnMlflowModelError,
    TrackingServerError,
)

_logger = logging.getLogger("mldeploy.model_uri")

FORMS = (
    "use a local path, runs:/<run_id>/<artifact_path>, models:/<name>/<version>, "
    "models:/<name>@<alias>, models:/<name>/latest or s3://<bucket>/<key>"
)
MODELS_FORMS = "use models:/<name>/<version>, models:/<name>@<alias> or models:/<name>/latest"
_STAGES = {"none", "staging", "production", "archived"}
_NOT_FOUND = {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}
_AUTH = {"UNAUTHENTICATED", "PERMISSION_DENIED", "CUSTOMER_UNAUTHORIZED"}
_S3_DENIED = set(
    "AccessDenied 403 Forbidden AllAccessDisabled InvalidAccessKeyId SignatureDoesNotMatch "
    "ExpiredToken InvalidToken".split()
)
_S3_MISSING = {"NoSuchKey", "404", "NotFound"}
_PACKAGES = {"google": "google-cloud-storage", "azure": "azure-storage-blob"}  # import -> pip


class Target(NamedTuple):
    """A remote model URI, checked for shape, and the store URIs to look it up in."""

    uri: str
    scheme: str
    parts: tuple[str, ...]  # path segments (runs:/ and models:/ URIs)
    tracking: str | None
    registry: str | None


def models_below(listdir, depth: int, top: list[tuple[str, bool]] | None = None) -> list[str]:
    """Relative paths of directories at most ``depth`` levels down that hold an MLmodel file.
    ``listdir(rel)`` returns the (name, is_dir) entries of a directory ("" is the top one)."""
    level = [name for name, is_dir in (listdir("") if top is None else top) if is_dir][:20]
    for _ in range(depth):
        listings = {d: listdir(d) for d in level}
        found = [d for d, entries in listings.items() if ("MLmodel", False) in entries]
        if found:
            return found
        level = [f"{d}/{n}" for d, entries in listings.items() for n, is_dir in entries if is_dir]
        level = level[:20]
    return []


def not_a_model(uri: str, found: list[str]) -> NotAnMlflowModelError:
    """The error for ``uri`` holding no MLmodel; ``found``: subdirectories that do."""
    hint = "point at the directory mlflow.<flavor>.save_model() or log_model() wrote"
    if found:
        choices = " or ".join(safe(f"{uri.rstrip('/')}/{rel}") for rel in found[:3])
        hint = f"the model is in a subdirectory: use {choices}"
    return NotAnMlflowModelError(f"{safe(uri)} has no MLmodel file", hint=hint)


def run_root_error(t: Target) -> NotAnMlflowModelError:
    """``runs:/<id>`` names a run's artifact root: say which artifact path to add."""
    from mlflow import MlflowClient

    run_id, client = t.parts[0], MlflowClient(tracking_uri=t.tracking, registry_uri=t.registry)
    choices = " or ".join(f"runs:/{run_id}/{n}" for n in _run_models(client, run_id)[:3])
    hint = f"use {choices}" if choices else "add the artifact path: runs:/<run_id>/<artifact_path>"
    return NotAnMlflowModelError(f"{safe(t.uri)} names a run, not a model", hint=hint)


def _run_models(client, run_id: str) -> list[str]:
    """The run's models: top-level artifact directories with an MLmodel, then (MLflow 3) its
    logged models. Raises MLflow's not-found error if there is no such run."""
    run = client.get_run(run_id)

    def listdir(rel: str) -> list[tuple[str, bool]]:
        listing = client.list_artifacts(run_id, rel or None)
        return [(f.path.rpartition("/")[2], f.is_dir) for f in listing]

    names = models_below(listdir, 1)
    try:
        logged = client.search_logged_models(
            experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
        )
        return names + sorted({m.name for m in logged if m.name} - set(names))
    except Exception:  # MLflow 2: no logged models
        return names


def translate(exc: BaseException, t: Target) -> ModelUriError:
    """Map an exception met while resolving ``t`` to an mldeploy error."""
    chain, names, boto = _facts(exc)
    where, text, code = safe(t.uri), str(exc), getattr(exc, "error_code", None)
    if boto is None and (match := re.search(r"An error occurred \((\w+)\)", text)):
        boto = match.group(1)  # a botocore error MLflow folded into its own message
    sdks = {"botocore", "boto3", "google", "azure"}
    storage = t.scheme not in ("runs", "models", "mlflow-artifacts") or boto is not None
    storage = storage or any(type(e).__module__.split(".")[0] in sdks for e in chain)
    server = safe(_server(t))

    if missing := next((e for e in chain if isinstance(e, ImportError)), None):
        module = (getattr(missing, "name", None) or "").split(".")[0] or "a required package"
        package = _PACKAGES.get(module, module)
        return ModelUriError(
            f"resolving {where} needs the Python package '{package}', which is not installed",
            hint=f"pip install {package}",
        )
    if "got unsupported URI" in text:  # e.g. sqlite:// with mlflow-skinny (no SQLAlchemy)
        return TrackingServerError(
            f"this MLflow installation cannot open the store at {server}",
            hint="install the full mlflow package for database stores, or set "
            "MLFLOW_TRACKING_URI to a tracking server (http://...)",
        )
    if "MLFLOW_ALLOW_FILE_STORE" in text:
        return TrackingServerError(
            f"{server} is a file tracking store, which this MLflow refuses by default",
            hint="set MLFLOW_ALLOW_FILE_STORE=true, or set MLFLOW_TRACKING_URI to a server or DB",
        )
    if names & {"NoCredentialsError", "PartialCredentialsError"}:
        return ModelUriError(
            f"no AWS credentials found to read {where}",
            hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with a role",
        )
    unreachable = names & {"ConnectionError", "Timeout", "TimeoutError", "ConnectTimeoutError"}
    if (unreachable or "Could not connect to the endpoint URL" in text) and storage:
        return ModelUriError(
            f"could not reach the storage service holding {where}",
            hint="check network access (and MLFLOW_S3_ENDPOINT_URL for S3-compatible stores)",
        )
    if unreachable:
        return TrackingServerError(
            f"could not reach the MLflow tracking server at {server}",
            hint="start it or fix the URI; MLFLOW_TRACKING_URI sets it",
        )
    if storage and (boto in _S3_DENIED or code in _AUTH):
        return ModelUriError(
            f"access to {where} was refused ({boto or code})",
            hint="check the credentials in use (AWS_PROFILE, AWS_ACCESS_KEY_ID or the role) and "
            "that they may list and read there (for S3: s3:ListBucket and s3:GetObject)",
        )
    if code in _AUTH:
        return TrackingServerError(
            f"the tracking server at {server} refused the request",
            hint="set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or "
            "MLFLOW_TRACKING_TOKEN",
        )
    if code == "ENDPOINT_NOT_FOUND":
        return TrackingServerError(
            f"{server} does not answer like an MLflow tracking server",
            hint="MLFLOW_TRACKING_URI should be the server's base URL, e.g. http://host:5000",
        )
    registry_lookup = t.scheme in ("runs", "models") and "MlflowException" in names
    if registry_lookup and (not storage or boto in _S3_MISSING):
        if (found := _diagnose(t)) is not None:
            return found
    if boto == "NoSuchBucket":
        return ModelNotFoundError(
            f"the S3 bucket holding {where} does not exist",
            hint="check the bucket name, and the account of the credentials in use",
        )
    if code in _NOT_FOUND or boto in _S3_MISSING:
        parent = t.uri.rstrip("/").rpartition("/")[0]
        hint = f"see what is there: aws s3 ls {parent}/" if t.scheme == "s3" else "check the URI"
        return ModelNotFoundError(f"nothing found at {where}", hint=safe(hint))
    if "registered artifact repository" in text:
        return ModelUriError(f"MLflow cannot read '{t.scheme}:' URIs like {where}", hint=FORMS)
    if code == "INVALID_PARAMETER_VALUE" and t.scheme == "models":
        return ModelUriError(f"malformed model URI: {where}", hint=MODELS_FORMS)
    first = safe(text.strip().splitlines()[0] if text.strip() else type(exc).__name__)[:200]
    return ModelUriError(f"could not resolve {where}: {first}", hint=FORMS)


def _diagnose(t: Target) -> ModelUriError | None:
    """Ask the tracking server / registry which part of a runs:/ or models:/ URI is missing."""
    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=t.tracking, registry_uri=t.registry)
        if t.scheme == "models":
            return _diagnose_model(client, t)
        run_id, path = t.parts[0], "/".join(t.parts[1:])
        if not _exists(client.get_run, run_id):
            return ModelNotFoundError(
                f"no run with id '{run_id}' on {safe(_server(t))}",
                hint="check the run id, and that MLFLOW_TRACKING_URI names the server that "
                "logged it",
            )
        models = _run_models(client, run_id)
    except Exception:
        _logger.debug("diagnosing %s failed", safe(t.uri), exc_info=True)
        return None
    if path in models:
        return None  # the path is there: something else went wrong
    hint = f"the run's models: {', '.join(models[:10])}" if models else "the run logged no model"
    return ModelNotFoundError(f"run '{run_id}' has no model at '{path}'", hint=hint)


def _diagnose_model(client, t: Target) -> ModelUriError | None:
    name, _, alias = t.parts[0].partition("@")
    selector = alias or (t.parts[1] if len(t.parts) > 1 else "")
    rest = "/".join(t.parts[1:] if alias else t.parts[2:])
    if not _exists(client.get_registered_model, name):
        what = f"no registered model named '{name}'"
        what += "" if selector else " and no logged model with that id"
        return ModelNotFoundError(
            f"{what} in {safe(_server(t))}",
            hint="check the name (case-sensitive) and that MLFLOW_TRACKING_URI / "
            "MLFLOW_REGISTRY_URI name the right registry",
        )
    known = _known_versions(client, name)
    if not selector:
        message = f"models:/{name} names a registered model but no version"
        return ModelNotFoundError(message, hint=f"{MODELS_FORMS}; {known}")
    if alias:
        found, what = _exists(client.get_model_version_by_alias, name, alias), f"alias '{alias}'"
    elif selector.isdigit():
        found, what = _exists(client.get_model_version, name, selector), f"version {selector}"
    elif selector.lower() == "latest":
        found, what = bool(client.search_model_versions(f"name = '{name}'")), "versions"
    elif selector.lower() in _STAGES:
        with warnings.catch_warnings():  # stages are deprecated, and MLflow says so every call
            warnings.simplefilter("ignore", FutureWarning)
            found = bool(client.get_latest_versions(name, [selector]))
        what = f"version in stage '{selector}'"
    else:
        return ModelUriError(
            f"'{selector}' in {safe(t.uri)} is neither a version, 'latest' nor a stage",
            hint=MODELS_FORMS,
        )
    if not found:
        return ModelNotFoundError(f"model '{name}' has no {what}", hint=known)
    if rest:
        return ModelNotFoundError(
            f"the model version has no artifact '{rest}'",
            hint="drop the path: models:/<name>/<version> already names the model directory",
        )
    return None


def _known_versions(client, name: str) -> str:
    """'versions: 1, 2; aliases: champion', or the URI forms if the registry cannot say."""
    try:
        numbers = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        aliases = sorted(client.get_registered_model(name).aliases or {})
    except Exception:
        return MODELS_FORMS
    text = f"versions: {', '.join(map(str, numbers)) or 'none'}"
    return text + (f"; aliases: {', '.join(aliases)}" if aliases else "")


def _server(t: Target) -> str:
    """The tracking server / registry ``t`` is looked up in (for messages)."""
    import mlflow

    if t.scheme == "models":
        return t.registry or mlflow.get_registry_uri()
    return t.tracking or mlflow.get_tracking_uri()


def _exists(lookup, *args) -> bool:
    """False if ``lookup(*args)`` raises MLflow's not-found (or bad-alias) error."""
    try:
        lookup(*args)
    except Exception as exc:
        if getattr(exc, "error_code", None) in _NOT_FOUND | {"INVALID_PARAMETER_VALUE"}:
            return False
        raise
    return True


def _facts(exc: BaseException) -> tuple[list[BaseException], set[str], str | None]:
    """``exc`` and the two exceptions it most directly wraps, their class names (with bases)
    and the first botocore error code among them."""
    chain = [exc]
    while len(chain) < 3 and (inner := chain[-1].__cause__ or chain[-1].__context__):
        chain.append(inner)
    names = {cls.__name__ for e in chain for cls in type(e).__mro__}
    responses = [r for e in chain if isinstance(r := getattr(e, "response", None), dict)]
    codes = [str(r["Error"]["Code"]) for r in responses if r.get("Error", {}).get("Code")]
    return chain, names, codes[0] if codes else None


def safe(text: str) -> str:
    """``text`` for a message: credentials masked by the one redaction
    (:func:`mldeploy.redact.redact`: ``user:pass@`` as ``***@``, secret query values such as a
    signed URL's signature as ``[redacted]``); ``container@account`` in ``wasbs://`` stays."""
    from mldeploy.redact import redact

    return redact(text)
