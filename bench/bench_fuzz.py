#!/usr/bin/env python3
"""Fuzz `/invocations` with ≥10,000 malformed bodies; ours and the peer in the same run.

Starts `mldeploy serve` (ours) and, when found, `mlflow models serve --env-manager local` (the
peer) and `mldeploy serve` with gunicorn's gthread worker in place of
mldeploy's (`before`: the flask engine before issue #17's transport, all else equal) on the
shipped classifier (20 double columns), each with the same worker count on
a free 127.0.0.1 port, then sends every server the same corpus from a fixed seed: mutations of
valid bodies (JSON dataframe_split / dataframe_records / inputs / instances, CSV, JSON Lines) —
byte flips, insertions, truncations, repeated segments, swapped content types, booleans, NaN,
1e999, huge integers, deep nesting, NUL and control bytes, invalid UTF-8, repeated and unknown
column names, wide CSV headers — and random JSON documents. Each body goes over a keep-alive
connection (a new one after the server closed it), from ``--threads`` client threads.

Prints a Markdown table per server:

* bodies sent; answers by status code; unanswered (the connection closed or reset with no answer,
  or no answer in ``--timeout`` s);
* **tracebacks in bodies** (``Traceback (most recent call last)``, ``File "...py", line``, or a
  ``stack_trace`` field) and **non-JSON error bodies**;
* **5xx not from the model** (any 5xx whose ``error_code`` is not ``MODEL_ERROR``/
  ``REQUEST_TIMEOUT``; the example model never raises on a body that passed the checks);
* **worker crashes**: worker processes that died during the run (the server's children, sampled
  every 0.2 s, minus the ones it retired on purpose), and whether the server is alive at the end;
* the slowest answer and p99, and ``/ping`` answered after the run.

    .venv/bin/python bench/bench_fuzz.py --parallel       # 10,240 bodies per server; ours
                                                          # ~2 min, mlflow ~20 min (loaded VM)
    .venv/bin/python bench/bench_fuzz.py --bodies 1000    # smoke run
    .venv/bin/python bench/bench_fuzz.py --servers ours   # ours only

The peer comes from ``--peers-venv`` (bench/.venv-peers from ``bash bench/setup_peers.sh``, or the
project's .venv when it has the full ``mlflow``, as ``.[mlserver]`` brings). Everything listens on
and sends to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import http.client
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import bench_serve as bs  # noqa: E402  (the servers, process trees, the 'before' build)

MODEL = bs.DEFAULT_MODEL
COLUMNS = [f"f{i}" for i in range(20)]
TRACEBACK = re.compile(rb"Traceback \(most recent call last\)|File \\?\"[^\"]+\.py\\?\", line|"
                       rb"\"stack_trace\"")
MODEL_CODES = {"MODEL_ERROR", "REQUEST_TIMEOUT"}
CONTENT_TYPES = ["application/json", "text/csv", "application/jsonlines", "application/json",
                 "text/csv; charset=utf-8", "application/x-www-form-urlencoded", "text/plain",
                 "application/json; format=pandas-split", "", "application/octet-stream"]


# -- the corpus ------------------------------------------------------------------------------------


def seeds(rng: random.Random) -> list[tuple[str, bytes]]:
    rows = [[round(rng.gauss(0, 1), 6) for _ in COLUMNS] for _ in range(3)]
    split = {"dataframe_split": {"columns": COLUMNS, "data": rows}}
    records = {"dataframe_records": [dict(zip(COLUMNS, r, strict=True)) for r in rows]}
    inputs = {"inputs": {c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}}
    instances = {"instances": [dict(zip(COLUMNS, r, strict=True)) for r in rows]}
    csv = ",".join(COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    lines = "\n".join(json.dumps(dict(zip(COLUMNS, r, strict=True))) for r in rows) + "\n"
    return [("application/json", json.dumps(d).encode()) for d in (split, records, inputs,
                                                                     instances)] + [
        ("text/csv", csv.encode()), ("application/jsonlines", lines.encode())]


NASTY = [b"true", b"FALSE", b"null", b"NaN", b"-Infinity", b"1e999", b"-0",
         b"99999999999999999999999",
         b"\"ZZSECRETZZ\"", b"[]", b"{}", b"\x00", b"\xff\xfe", b"\xed\xa0\x80", b"\"\\ud800\"",
         b"\r\n", b"\n\n", b",,,", b"\"", b"\\", b"{\"dataframe_split\":", b"]]]]", b"[[[[",
         b"\x1b[2J", b"%0a", b"\"f0\"", b"\"f0\",\"f0\"", b"1,2,3,4,5,6,7,8,9,10,11,12"]


def mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        op = rng.randrange(9)
        at = rng.randrange(len(data) + 1) if data else 0
        if op == 0 and data:  # flip bytes
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(data))
                data[i] = rng.randrange(256)
        elif op == 1:  # insert a nasty token
            data[at:at] = rng.choice(NASTY)
        elif op == 2 and data:  # truncate
            del data[at:]
        elif op == 3 and data:  # repeat a segment
            end = min(len(data), at + rng.randint(1, 64))
            data[at:at] = data[at:end] * rng.randint(2, 200)
        elif op == 4 and data:  # delete a segment
            del data[at:at + rng.randint(1, 16)]
        elif op == 5:  # replace a number with a nasty token
            m = list(re.finditer(rb"-?\d+\.\d+", bytes(data)))
            if m:
                hit = rng.choice(m)
                data[hit.start():hit.end()] = rng.choice(NASTY)
        elif op == 6:  # swap a column name
            data = bytearray(bytes(data).replace(b"f%d" % rng.randrange(20),
                                                 rng.choice([b"f0", b"zz", b"", b"f99", b"\xff"]),
                                                 1))
        elif op == 7:  # random bytes
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
        else:  # swap case / whitespace
            data = bytearray(bytes(data).swapcase() if rng.random() < 0.3
                             else bytes(data).replace(b",", b" , ", rng.randint(1, 5)))
    return bytes(data)


def random_json(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(8 if depth < 6 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**63, -2**64, 1.5, 1e308])
    if kind == 2:
        return rng.choice(["", "f0", "dataframe_split", "\u0000", "\u202e", "x" * 300])
    if kind == 3:
        return rng.gauss(0, 1)
    if kind == 4:
        return rng.choice(COLUMNS)
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    keys = ["dataframe_split", "dataframe_records", "inputs", "instances", "params", "columns",
            "data", "index", *COLUMNS[:3], "zz"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def bomb(rng: random.Random) -> tuple[str, bytes]:
    """Bodies meant to cost CPU: repeated names, wide headers, deep nesting, many rows/keys."""
    n = rng.choice((1000, 10_000, 40_000))
    which = rng.randrange(6)
    if which == 0:
        return "application/json", json.dumps(
            {"dataframe_split": {"columns": ["f0"] * n, "data": [[1.0] * n]}}).encode()
    if which == 1:
        return "text/csv", (",".join(f"c{i}" for i in range(n)) + "\n1\n").encode()
    if which == 2:
        return "application/json", b"[" * n + b"]" * n
    if which == 3:
        return "application/json", json.dumps(
            {"inputs": {f"k{i}": [1.0] for i in range(n)}}).encode()
    if which == 4:
        return "application/json", json.dumps({"dataframe_split": {
            "columns": COLUMNS, "data": [[1.0] * 20] * (n // 10)}}).encode()
    return "text/csv", (",".join(COLUMNS) + "\n" + ("1," * 19 + "1\n") * (n // 10)
                        + "1" + ",1" * 40 + "\n").encode()


def corpus(count: int, seed: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    base = seeds(rng)
    out: list[tuple[str, bytes]] = []
    while len(out) < count:
        r = rng.random()
        if r < 0.75:
            ctype, body = rng.choice(base)
            body = mutate(rng, body)
            if rng.random() < 0.1:
                ctype = rng.choice(CONTENT_TYPES)
        elif r < 0.97:
            ctype, body = "application/json", json.dumps(random_json(rng)).encode()
            if rng.random() < 0.3:
                body = mutate(rng, body)
        else:
            ctype, body = bomb(rng)
        out.append((ctype, body))
    return out


# -- sending ---------------------------------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: collections.Counter[int] = collections.Counter()
        self.unanswered = 0
        self.tracebacks = 0
        self.non_json_errors = 0
        self.non_model_5xx = 0
        self.codes: collections.Counter[str] = collections.Counter()
        self.latencies: list[float] = []
        self.examples: dict[str, bytes] = {}

    def add(self, status: int | None, body: bytes, seconds: float, err: str = "") -> None:
        with self.lock:
            self.latencies.append(seconds)
            if status is None:
                self.unanswered += 1
                self.examples.setdefault("unanswered", err.encode())
                return
            self.status[status] += 1
            if TRACEBACK.search(body):
                self.tracebacks += 1
                self.examples.setdefault("traceback", body[:300])
            if status >= 400:
                try:
                    doc = json.loads(body)
                    code = str(doc.get("error_code", "")) if isinstance(doc, dict) else ""
                except ValueError:
                    self.non_json_errors += 1
                    self.examples.setdefault("non-JSON error", body[:200])
                    code = ""
                self.codes[code or "-"] += 1
                if status >= 500 and code not in MODEL_CODES:
                    self.non_model_5xx += 1
                    self.examples.setdefault("non-model 5xx", body[:300])


def send_all(port: int, bodies: list[tuple[str, bytes]], threads: int, timeout: float
             ) -> Tally:
    tally = Tally()
    lock = threading.Lock()
    todo = iter(range(len(bodies)))

    def worker() -> None:
        conn: http.client.HTTPConnection | None = None
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                break
            ctype, body = bodies[i]
            if conn is None:
                conn = http.client.HTTPConnection(bs.HOST, port, timeout=timeout)
            started = time.perf_counter()
            try:
                headers = {"Content-Type": ctype} if ctype else {}
                conn.request("POST", "/invocations", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                tally.add(resp.status, data, time.perf_counter() - started)
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                tally.add(None, b"", time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return tally


class WorkerWatch:
    """Samples the server's worker processes every 0.2 s: the pids that came and went."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: set[int] = set()
        self.gone: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _workers(self) -> set[int]:
        return set(bs.process_tree(self.pid)) - {self.pid}

    def _run(self) -> None:
        last = self._workers()
        self.seen |= last
        while not self._stop.wait(0.2):
            now = self._workers()
            self.gone |= last - now
            self.seen |= now
            last = now

    def __enter__(self) -> WorkerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def ping(port: int) -> int:
    try:
        return bs.http_request(port, "GET", "/ping", timeout=10)[0]
    except OSError:
        return 0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bodies", type=int, default=10_240)
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--servers", default="ours,before,peer",
                   help="comma list of ours, before, peer (ours,before,peer; missing peers skip)")
    p.add_argument("--before-commit", default="HEAD")
    p.add_argument("--before-worker", choices=("gthread", "as-is"), default="gthread")
    p.add_argument("--parallel", action="store_true",
                   help="fuzz the servers at the same time (the bodies/s row then shares the "
                   "machine between them)")
    p.add_argument("--ours-bin", default=str(bs.ROOT / ".venv" / "bin" / "mldeploy"))
    p.add_argument("--peers-venv", default=str(BENCH / ".venv-peers"))
    args = p.parse_args(argv)
    wanted = [s.strip() for s in args.servers.split(",")]
    if "peer" in wanted and not (Path(args.peers_venv) / "bin" / "mlflow").exists():
        fallback = bs.ROOT / ".venv"
        if (fallback / "bin" / "mlflow").exists():
            args.peers_venv = str(fallback)
        else:
            print("note: no mlflow for the peer; running without it", file=sys.stderr)
            wanted.remove("peer")
    serve_args = argparse.Namespace(
        servers=wanted, model=MODEL, workers=args.workers, ours_bin=args.ours_bin,
        peers_venv=str(Path(args.peers_venv).absolute()), mlserver=False,
        before_commit=args.before_commit, before_worker=args.before_worker)
    servers = bs.make_servers(serve_args)
    bodies = corpus(args.bodies, args.seed)
    size = sum(len(b) for _, b in bodies)
    print(f"corpus: {len(bodies):,} bodies, {size / 1e6:.1f} MB, seed {args.seed}; "
          f"{args.threads} client threads; {args.workers} workers per server", file=sys.stderr)
    results: dict = {}

    def fuzz(server: bs.Server, tmp: Path) -> None:
        bs.log(f"{server.label}: starting")
        server.start(tmp, 300)
        try:
            with WorkerWatch(server.proc.pid) as watch:
                started = time.perf_counter()
                tally = send_all(server.port, bodies, args.threads, args.timeout)
                took = time.perf_counter() - started
            alive_ping = ping(server.port)
            log_text = server.log.read_text(errors="replace") if server.log else ""
            retired = len(re.findall(r"retiring", log_text))
            results[server.key] = (server, tally, took, watch, alive_ping, retired,
                                   server.proc.poll() is None)
            bs.log(f"{server.label}: {len(bodies):,} bodies in {took:.0f} s")
            # each server's column as soon as it is done (a long peer run may be cut short)
            print(report({server.key: results[server.key]}, len(bodies), args),
                  file=sys.stderr, flush=True)
        finally:
            server.stop()

    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        if args.parallel:  # the servers at the same time, each with its own client threads
            pool = [threading.Thread(target=fuzz, args=(s, Path(tmp))) for s in servers]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
        else:
            for server in servers:
                fuzz(server, Path(tmp))
    print(report({s.key: results[s.key] for s in servers if s.key in results}, len(bodies),
                 args))
    return 0


def report(results: dict, count: int, args: argparse.Namespace) -> str:
    keys = list(results)
    lines = [f"Fuzz run {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC: {count:,} bodies "
             f"per server (seed {args.seed}), {args.threads} client threads, keep-alive, "
             f"{args.workers} workers per server; load average "
             f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end.", ""]
    lines.append("| | " + " | ".join(results[k][0].label for k in keys) + " |")
    lines.append("|---|" + "---:|" * len(keys))

    def row(title: str, fn) -> None:
        lines.append(f"| {title} | " + " | ".join(str(fn(*results[k])) for k in keys) + " |")

    row("version", lambda s, *_: s.version)
    row("bodies answered", lambda s, t, *_: f"{sum(t.status.values()):,}")
    row("unanswered (closed/reset/timeout)", lambda s, t, *_: t.unanswered)
    row("worker crashes (workers that died, minus retired)",
        lambda s, t, took, w, pg, retired, alive: max(0, len(w.gone) - retired))
    row("server alive and /ping 200 after the run",
        lambda s, t, took, w, pg, retired, alive: "yes" if alive and pg == 200 else
        f"NO (alive={alive}, ping={pg})")
    row("tracebacks in bodies", lambda s, t, *_: t.tracebacks)
    row("non-JSON error bodies", lambda s, t, *_: t.non_json_errors)
    row("5xx not from the model", lambda s, t, *_: t.non_model_5xx)
    statuses = sorted({c for k in keys for c in results[k][1].status})
    for code in statuses:
        row(f"status {code}", lambda s, t, *_, code=code: f"{t.status.get(code, 0):,}")
    row("answer p50 / p99 / max, ms", lambda s, t, *_: (
        f"{pct(t.latencies, 0.5) * 1000:.1f} / {pct(t.latencies, 0.99) * 1000:.1f} / "
        f"{max(t.latencies) * 1000:,.0f}"))
    row("bodies per second", lambda s, t, took, *_: f"{count / took:,.0f}")
    lines.append("")
    for k in keys:
        tally = results[k][1]
        top = ", ".join(f"{c} {n:,}" for c, n in tally.codes.most_common(8))
        lines.append(f"- {results[k][0].label}: error codes {top}")
        for what, example in tally.examples.items():
            lines.append(f"  - first {what}: `{example[:160]!r}`")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
