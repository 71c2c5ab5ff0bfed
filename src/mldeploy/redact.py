"""The one redaction of credentials, for everything mldeploy shows or stores: error messages, log
tails, image labels, annotations, tags.

One behaviour everywhere:

- a URL's user information becomes ``***@`` (``https://alice:s3cret@host/x`` ->
  ``https://***@host/x``), so the reader sees that credentials were given and where, never
  which; so does a bare ``user:password@host`` a message quotes; Azure storage URIs
  (``wasbs://container@account...``, ``abfss://``) keep their container, which names no
  credential;
- the value after a secret-looking key (``password=``, ``token:``, ``aws_secret_access_key=``,
  ``Authorization: Bearer ...``, ``X-Amz-Signature=``) becomes ``[redacted]``, the key stays;
- AWS access key ids (``AKIA...``, ``ASIA...``) and bare ``Bearer`` tokens become
  ``[redacted]``;
- headers: the values of credential headers (``Authorization``, ``Cookie``, ``X-Api-Key``,
  anything naming a token, secret or password) become ``[redacted]``, others are redacted as
  text.

:func:`redact` takes an optional ``limit`` that clips the result (after redaction, so a secret is
never cut in half and half shown).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

REDACTED = "[redacted]"
USERINFO_MASK = "***@"

# scheme://userinfo@ : the userinfo is everything up to the last "@" before the host's end.
_USERINFO = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s@]*(?:@[^/?#\s@]*)*@")
_SECRET_WORD = (r"(?:password|passwd|pwd|secret|token|api[_-]?key|authorization|signature"
                r"|credential)")
# user:password@host outside a URL (a message quoting a URI's host part); not an image digest
_BARE_USERINFO = re.compile(r"(?<![\w.:@-])[^\s/@:'\"]+:[^\s/@'\"]+@(?!sha\d+:)(?=[\w\[])")
_KEY_VALUE = re.compile(
    rf"(?i)(\b[\w-]*{_SECRET_WORD}[\w-]*)"  # the key (kept)
    r"(\"?'?\s*[=:]\s*\"?'?)"  # = or : with optional quotes
    r"(?:(?:bearer|basic|token)\s+)?"  # an auth scheme before the credential
    r"[^\s\"'&,;]+"  # the value (redacted)
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_SECRET_HEADER = re.compile(rf"(?i)^(?:cookie|set-cookie|x-api-key|.*{_SECRET_WORD}.*)$")


_AZURE_STORAGE = ("wasb://", "wasbs://", "abfs://", "abfss://")


def _mask_userinfo(m: re.Match[str]) -> str:
    scheme, userinfo = m.group(1), m.group(0)[len(m.group(1)):-1]
    if scheme.lower() in _AZURE_STORAGE and ":" not in userinfo:
        return m.group(0)  # wasbs://CONTAINER@ACCOUNT: the container, not a credential
    return scheme + USERINFO_MASK


def redact(text: object, limit: int | None = None) -> str:
    """``text`` with every credential masked (see the module), stripped and clipped to
    ``limit`` characters (``...`` marks a cut)."""
    out = _USERINFO.sub(_mask_userinfo, str(text))
    out = _BARE_USERINFO.sub(USERINFO_MASK, out)
    out = _KEY_VALUE.sub(lambda m: m.group(1) + m.group(2) + REDACTED, out)
    out = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", out)
    out = _AWS_KEY_ID.sub(REDACTED, out).strip()
    if limit is not None and len(out) > limit:
        out = out[: max(limit - 3, 0)] + "..."
    return out


def redact_uri(uri: str) -> str:
    """A URI fit for a label or an annotation: its user information shown as ``***@`` and any
    secret query value (a presigned URL's signature, ``?token=``) as ``[redacted]``."""
    return redact(uri)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with the values of credential headers replaced and the others redacted."""
    return {k: REDACTED if _SECRET_HEADER.match(str(k)) else redact(v)
            for k, v in headers.items()}


__all__ = ["REDACTED", "USERINFO_MASK", "redact", "redact_headers", "redact_uri"]
