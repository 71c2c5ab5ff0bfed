#!/usr/bin/env python3
"""The offline test image's S3 store with MinIO's command-line interface, on moto's server.

``minio server DIR --address HOST:PORT`` serves S3 on HOST:PORT with one bucket per folder in
DIR (what the generated project's ``mkdir -p /data/BUCKET`` makes); ``mc ready ALIAS`` exits 0
when the store at ``MC_HOST_<ALIAS>`` (default http://127.0.0.1:9000) answers. Objects live in
moto's memory: they do not survive a restart (a test store, not MinIO)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path


def _server(args: list[str]) -> int:
    data, address = Path("/data"), "127.0.0.1:9000"
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--address" and rest:
            address = rest.pop(0)
        elif arg.startswith("--address="):
            address = arg.split("=", 1)[1]
        elif not arg.startswith("-"):
            data = Path(arg)
    host, _, port = address.rpartition(":")
    host = host or "0.0.0.0"

    import boto3
    from moto.server import ThreadedMotoServer

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server = ThreadedMotoServer(ip_address=host, port=int(port), verbose=False)
    server.start()
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                      aws_access_key_id="store", aws_secret_access_key="store")
    for folder in sorted(p for p in data.iterdir() if p.is_dir()) if data.is_dir() else []:
        s3.create_bucket(Bucket=folder.name)
    print(f"S3 store (moto) on {url}, buckets: {[b['Name'] for b in s3.list_buckets()['Buckets']]}",
          flush=True)
    threading.Event().wait()
    return 0


def _ready(args: list[str]) -> int:
    alias = args[1] if len(args) > 1 else "local"
    url = os.environ.get(f"MC_HOST_{alias}", "http://127.0.0.1:9000").rstrip("/")
    try:
        with urllib.request.urlopen(f"{url}/minio/health/ready", timeout=3) as resp:
            return 0 if resp.status < 500 else 1
    except urllib.error.HTTPError as exc:  # moto answers S3 errors: it is up
        return 0 if exc.code < 500 else 1
    except OSError:
        return 1


def main(argv: list[str]) -> int:
    prog = Path(argv[0]).name
    if prog == "mc" and argv[1:2] == ["ready"]:
        return _ready(argv[1:])
    if prog == "minio" and argv[1:2] == ["server"]:
        return _server(argv[2:])
    print(f"usage: minio server DIR --address HOST:PORT | mc ready ALIAS (got {argv})",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
