"""The Azure ML target's test kit: a control-plane fake the real azure-ai-ml SDK talks to over
https on 127.0.0.1 (:mod:`._arm`), request bodies checked with the SDK's own REST models
(:mod:`._schema`), Azurite for the blob store, a self-signed certificate trusted through
``REQUESTS_CA_BUNDLE`` and a resolver that answers ``*.localhost`` with 127.0.0.1 (glibc here
does not; the SDK uploads to ``https://devstoreaccount1.blob.<storage suffix>``).

Nothing here is used by the product: the target reaches the fake only through Azure's own
mechanisms (``ARM_CLOUD_METADATA_URL``, ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``,
``REQUESTS_CA_BUNDLE``).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mldeploy.plugins.azureml.testing._arm import (
    ACCOUNT,
    AZURITE_KEY,
    CONTAINER,
    ControlPlane,
)


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, localhost and *.blob.localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mldeploy azure fake")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.DNSName(f"{ACCOUNT}.blob.localhost"),
                x509.DNSName("*.blob.localhost"), x509.DNSName(f"{ACCOUNT}.blob.core.localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@contextlib.contextmanager
def localhost_resolver() -> Iterator[None]:
    """``*.localhost`` -> 127.0.0.1 inside the block; every other name but localhost and
    127.0.0.1 is refused, so nothing leaves the machine."""
    original = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        h = host.decode() if isinstance(host, bytes) else str(host)
        if h.endswith(".localhost") or h in ("localhost", "127.0.0.1"):
            return original("127.0.0.1", *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"the Azure test kit resolves no {h!r}")

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.getaddrinfo = original  # type: ignore[assignment]


def azurite_binary(root: Path) -> Path | None:
    """``.azurite/node_modules/.bin/azurite-blob`` (scripts/install-azurite.sh), or on PATH."""
    local = root / ".azurite" / "node_modules" / ".bin" / "azurite-blob"
    if local.exists():
        return local
    found = shutil.which("azurite-blob")
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def azurite(binary: Path, cert: Path, key: Path, workdir: Path) -> Iterator[str]:
    """Run Azurite's blob service over https on 127.0.0.1 (``--disableTelemetry``); yields
    ``https://127.0.0.1:PORT/devstoreaccount1`` with the workspace container created."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = open(workdir / "azurite.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--cert", str(cert),
         "--key", str(key), "--location", str(workdir), "--disableTelemetry",
         "--skipApiVersionCheck", "--loose", "--silent"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        until = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > until:
                raise RuntimeError("Azurite did not start: "
                                   + (workdir / "azurite.log").read_text()[-500:])
            time.sleep(0.2)
        url = f"https://127.0.0.1:{port}/{ACCOUNT}"
        from azure.storage.blob import BlobServiceClient

        svc = BlobServiceClient(url, credential={"account_name": ACCOUNT,
                                                 "account_key": AZURITE_KEY},
                                connection_verify=str(cert))
        svc.create_container(CONTAINER)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


AZURE_ENV = ("ARM_CLOUD_METADATA_URL", "AZUREML_CURRENT_CLOUD", "IDENTITY_ENDPOINT",
             "IDENTITY_HEADER", "REQUESTS_CA_BUNDLE", "MSI_ENDPOINT", "MSI_SECRET",
             "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET",
             "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST", "AZURE_USERNAME")


def azure_env(plane: ControlPlane, cert: Path) -> dict[str, str]:
    """The environment a user of a private cloud with a managed identity would have."""
    return {"ARM_CLOUD_METADATA_URL": plane.metadata_url,
            "IDENTITY_ENDPOINT": plane.identity_url, "IDENTITY_HEADER": "fake-identity-header",
            "REQUESTS_CA_BUNDLE": str(cert)}


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in (*AZURE_ENV, *values)}
    for k in AZURE_ENV:
        os.environ.pop(k, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


__all__ = ["ACCOUNT", "AZURITE_KEY", "CONTAINER", "ControlPlane", "azure_env", "azurite",
           "azurite_binary", "environment", "free_port", "localhost_resolver", "make_cert"]


@contextlib.contextmanager
def workspace(binary: Path, tmp: Path, sub: str, rg: str, ws: str, *,
              docker: Any = None) -> Iterator[ControlPlane]:
    """Azurite (``binary``) and a started :class:`ControlPlane` with workspace ``sub/rg/ws``,
    the environment pointing azure-identity and azure-ai-ml at them; files under ``tmp``.
    ``docker``: a Docker client to run each deployment's image (the fake's Docker mode)."""
    cert, key = make_cert(tmp / "tls")
    with localhost_resolver(), azurite(binary, cert, key, tmp / "azurite") as blob_url:
        port = blob_url.split(":")[2].split("/")[0]
        plane = ControlPlane(cert, key, blob_url=blob_url, docker=docker,
                             storage_suffix=f"core.localhost:{port}").start()
        plane.add_workspace(sub, rg, ws)
        try:
            with environment(azure_env(plane, cert)):
                yield plane
        finally:
            plane.stop()
