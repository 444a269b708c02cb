"""Load test against a live server: a weighted mix of routes from many
keep-alive clients, while one fine-tune job runs.

    .venv/bin/python bench/load.py --url http://127.0.0.1:8000 --clients 32 --seconds 45
        [--mix api_search=30,facets=15,model_detail=15,catalogue=10,model_page=10,resolve=10,download=8,upload=2]
        [--token KEY | --repo PATH] [--pids 123,456] [--pg-dsn postgres://…/db] [--json out.json]

Without ``--token`` it makes an API token for a ``bench-load`` user by running
``manage.py shell`` in ``--repo`` (default: this checkout) with the current
environment, so run it with the same ``MODELLIBRARY_VAR_DIR`` / ``DATABASE_URL``
as the server. Reports per-route req/s and p50/p95/p99, errors by status, the
RSS of the web and worker processes (found by ``--pids`` or by their command
line and working directory), PostgreSQL connections (``--pg-dsn``) and whether
the fine-tune started at the beginning of the run succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MIX = "api_search=30,facets=15,model_detail=15,catalogue=10,model_page=10,resolve=10,download=8,upload=2"
OK = {200, 201, 206, 302, 304}
WORDS = ["sentiment", "classifier", "text", "support", "tickets", "digits", "cancer", "embedding", "router", "mlp"]
TERMINAL = {"succeeded", "failed", "cancelled"}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class Client:
    """One keep-alive HTTP/1.1 connection; reconnects after an error."""

    def __init__(self, base: str, token: str | None, timeout: float = 60.0) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token, self.timeout = token, timeout
        self.conn: http.client.HTTPConnection | None = None
        self.app_ms: float | None = None  # the app's own time (Server-Timing) for the last answer
        self.view = memoryview(bytearray(1 << 20))

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        self.app_ms = None
        hdrs = {"Accept": "*/*", **(headers or {})}
        if self.token:
            hdrs["Authorization"] = f"Token {self.token}"
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=hdrs)
                resp = self.conn.getresponse()
                timing = resp.getheader("Server-Timing") or ""
                if timing.startswith("app;dur="):
                    self.app_ms = float(timing[8:].split(",")[0])
                head = b""
                # Keep the start of the body (enough for JSON answers); read the
                # rest of a large one (downloads) into one reused buffer.
                while n := resp.readinto(self.view):
                    if len(head) < (4 << 20):
                        head += self.view[:n]
                if resp.will_close:
                    self.close()
                return resp.status, head
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # A keep-alive connection closed by the server between two
                # requests: retry once on a new one.
                self.close()
                if attempt == 2:
                    raise exc
            except Exception:
                self.close()
                raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        status, data = self.request(method, path, **kw)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def multipart(fields: dict[str, str], file_name: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = []
    for k, v in fields.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    out.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
        f"Content-Type: text/csv\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


# --- what the clients ask for ----------------------------------------------------------


@dataclass
class Catalogue:
    slugs: list[str]
    facet_paths: dict[str, list[str]]
    downloads: list[str]
    queries: list[str]
    resolvable: list[str]  # resolve paths that answered 200 when discovered


def _paths(nodes: list[dict[str, Any]]) -> list[str]:
    out = []
    for n in nodes:
        if n.get("path"):
            out.append(n["path"])
        out += _paths(n.get("children") or [])
    return out


def discover(base: str, token: str | None) -> Catalogue:
    c = Client(base, token)
    status, page = c.json("GET", "/api/v1/models/?page_size=100")
    if status != 200:
        raise SystemExit(f"GET /api/v1/models/ answered {status}")
    slugs = [r["slug"] for r in page["results"]]
    facets = {k: _paths(v) for k, v in page["facets"].items() if k in ("modality", "result", "domain")}
    facets = {k: v for k, v in facets.items() if v}
    downloads: set[str] = set()
    resolvable = []
    for slug in slugs:
        for extra in ("", "?precision=int8", "?precision=fp32", "?runtime=onnxruntime"):
            status, body = c.json("GET", f"/api/v1/models/{slug}/resolve{extra}")
            if status == 200 and body and body.get("download_url"):
                resolvable.append(f"/api/v1/models/{slug}/resolve{extra}")
                downloads.add(urlsplit(body["download_url"]).path)
    queries = WORDS + [w for s in slugs for w in s.split("-") if len(w) > 2]
    c.close()
    return Catalogue(
        slugs=slugs, facet_paths=facets, downloads=sorted(downloads), queries=queries, resolvable=resolvable
    )


def make_request(route: str, cat: Catalogue, rng: random.Random, client_id: int) -> tuple[str, str, bytes | None, dict]:
    if route == "api_search":
        q = " ".join(rng.sample(cat.queries, rng.choice((1, 1, 2))))
        return "GET", "/api/v1/models/?" + urlencode({"q": q}), None, {}
    if route == "facets":
        kind = rng.choice(sorted(cat.facet_paths))
        params = {kind: rng.choice(cat.facet_paths[kind])}
        if rng.random() < 0.3:
            params["min_precision"] = "0.5"
        return "GET", "/api/v1/models/?" + urlencode(params), None, {}
    if route == "model_detail":
        return "GET", f"/api/v1/models/{rng.choice(cat.slugs)}/", None, {}
    if route == "catalogue":
        params = {} if rng.random() < 0.5 else {"q": rng.choice(cat.queries)}
        return "GET", "/" + (("?" + urlencode(params)) if params else ""), None, {}
    if route == "model_page":
        return "GET", f"/models/{rng.choice(cat.slugs)}/", None, {}
    if route == "resolve":
        return "GET", rng.choice(cat.resolvable), None, {}
    if route == "download":
        return "GET", rng.choice(cat.downloads), None, {}
    if route == "upload":
        rows = "\n".join(
            f"{' '.join(rng.choices(WORDS, k=6))} {uuid.uuid4().hex[:8]},{rng.choice(('a', 'b', 'c'))}"
            for _ in range(40)
        )
        body, ctype = multipart({"name": f"bench-load-{client_id}"}, "upload.csv", f"text,label\n{rows}\n".encode())
        return "POST", "/api/v1/datasets/", body, {"Content-Type": ctype}
    raise ValueError(route)


# --- the run --------------------------------------------------------------------


@dataclass
class Results:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    app_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    samples: list[str] = field(default_factory=list)

    def add(self, route: str, status: str, seconds: float, app_ms: float | None) -> None:
        with self.lock:
            self.latencies[route].append(seconds)
            self.statuses[route][status] += 1
            if app_ms is not None:
                self.app_ms[route].append(app_ms)


def client_loop(
    i: int, base: str, token: str | None, cat: Catalogue, mix: list[tuple[str, float]], stop_at: float, res: Results
) -> None:
    rng = random.Random(i)
    routes, weights = [r for r, _ in mix], [w for _, w in mix]
    c = Client(base, token)
    while time.monotonic() < stop_at:
        route = rng.choices(routes, weights)[0]
        method, path, body, headers = make_request(route, cat, rng, i)
        t0 = time.perf_counter()
        try:
            status, data = c.request(method, path, body=body, headers=headers)
            label = str(status)
            if status not in OK and len(res.samples) < 20:
                res.samples.append(f"{status} {method} {path}: {data[:300]!r}")
        except Exception as exc:  # noqa: BLE001 - every failure is counted
            label = type(exc).__name__
            if len(res.samples) < 20:
                res.samples.append(f"{label} {method} {path}: {exc}")
        res.add(route, label, time.perf_counter() - t0, c.app_ms)
    c.close()


def proc_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def find_pids(repo: Path) -> dict[str, list[int]]:
    """Web (gunicorn/runserver) and worker (celery) processes running from ``repo``."""
    found: dict[str, list[int]] = {"web": [], "worker": []}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(d / "cwd")
        except OSError:
            continue
        if Path(cwd).resolve() != repo.resolve():
            continue
        if "gunicorn" in cmd or "runserver" in cmd:
            found["web"].append(int(d.name))
        elif "celery" in cmd and " worker" in cmd:
            found["worker"].append(int(d.name))
    return found


class Sampler(threading.Thread):
    """RSS of the server's processes and PostgreSQL connections, every second."""

    def __init__(self, pids: dict[str, list[int]], pg_dsn: str | None) -> None:
        super().__init__(daemon=True)
        self.pids, self.pg_dsn = pids, pg_dsn
        self.done = threading.Event()
        self.rss: dict[str, list[int]] = defaultdict(list)  # role → total KiB per sample
        self.per_pid: dict[int, list[int]] = defaultdict(list)
        self.pg_connections: list[int] = []
        self.cpu_first: dict[int, float] = {}
        self.cpu_last: dict[int, float] = {}

    def run(self) -> None:
        conn = None
        if self.pg_dsn:
            import psycopg

            conn = psycopg.connect(self.pg_dsn, autocommit=True)
            db = urlsplit(self.pg_dsn).path.lstrip("/")
        while not self.done.is_set():
            for role, pids in self.pids.items():
                total = 0
                for pid in pids:
                    cpu = proc_cpu_s(pid)
                    if cpu is not None:
                        self.cpu_first.setdefault(pid, cpu)
                        self.cpu_last[pid] = cpu
                    kib = proc_rss_kib(pid)
                    if kib is not None:
                        self.per_pid[pid].append(kib)
                        total += kib
                self.rss[role].append(total)
            if conn is not None:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [db]
                ).fetchone()
                self.pg_connections.append(int(row[0]) if row else 0)
            self.done.wait(1.0)
        if conn is not None:
            conn.close()


class FineTune(threading.Thread):
    """Uploads the support-ticket set, starts one fine-tune and follows it."""

    def __init__(self, base: str, token: str, model: str) -> None:
        super().__init__(daemon=True)
        self.base, self.token, self.model = base, token, model
        self.status = "not started"
        self.detail = ""
        self.job_id: int | None = None
        self.started = time.monotonic()
        self.finished: float | None = None
        self.give_up = threading.Event()

    def run(self) -> None:
        c = Client(self.base, self.token)
        data = (ROOT / "fixtures" / "support_tickets.csv").read_bytes()
        body, ctype = multipart({"name": "bench-load-finetune"}, "support_tickets.csv", data)
        status, ds = c.json("POST", "/api/v1/datasets/", body=body, headers={"Content-Type": ctype})
        if status not in (200, 201):
            self.status, self.detail = "upload failed", f"{status} {ds}"
            return
        payload = json.dumps({"base": self.model, "dataset": ds["id"], "name": f"bench-load-{uuid.uuid4().hex[:6]}"})
        status, job = c.json(
            "POST", "/api/v1/finetune-jobs/", body=payload.encode(), headers={"Content-Type": "application/json"}
        )
        if status not in (200, 201, 202):
            self.status, self.detail = "request failed", f"{status} {job}"
            return
        self.job_id = job["id"]
        self.status = job["status"]
        while not self.give_up.wait(2.0):
            try:
                status, job = c.json("GET", f"/api/v1/finetune-jobs/{self.job_id}/")
            except Exception as exc:  # noqa: BLE001
                self.detail = f"poll: {exc}"
                continue
            if status == 200:
                self.status = job["status"]
                self.detail = job.get("error") or ""
                if self.status in TERMINAL:
                    self.finished = time.monotonic()
                    return


def make_token(repo: Path) -> str:
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from catalog.services.teams import team_get_or_create\n"
        "u, _ = get_user_model().objects.get_or_create(username='bench-load')\n"
        "t = team_get_or_create(name='Bench Load')\n"
        "t.members.add(u)\n"
        "try:\n"
        "    from catalog.services.tokens import api_token_create\n"
        "    print('TOKEN', api_token_create(user=u, name='bench-load'))\n"
        "except ImportError:\n"
        "    from rest_framework.authtoken.models import Token\n"
        "    print('TOKEN', Token.objects.get_or_create(user=u)[0].key)\n"
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    return next(line.split()[1] for line in out.splitlines() if line.startswith("TOKEN "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=45)
    parser.add_argument("--mix", default=DEFAULT_MIX)
    parser.add_argument("--token", default=None)
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout the server runs from")
    parser.add_argument("--pids", default="", help="web pids, comma-separated; 'worker:' prefix for workers")
    parser.add_argument("--pg-dsn", default=None, help="count this database's connections during the run")
    parser.add_argument("--finetune-model", default="all-minilm-l6-v2")
    parser.add_argument("--no-finetune", action="store_true")
    parser.add_argument("--finetune-wait", type=float, default=900, help="seconds to wait for it after the run")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--label", default="")
    args = parser.parse_args()

    mix = []
    for part in args.mix.split(","):
        name, _, weight = part.partition("=")
        mix.append((name.strip(), float(weight)))
    token = args.token or make_token(args.repo)
    base = args.url.rstrip("/")
    cat = discover(base, token)
    if not cat.downloads:
        mix = [(r, w) for r, w in mix if r not in ("download", "resolve")]
    if args.pids:
        pids: dict[str, list[int]] = {"web": [], "worker": []}
        for p in args.pids.split(","):
            role, _, pid = p.rpartition(":")
            pids[role or "web"].append(int(pid))
    else:
        pids = find_pids(args.repo)
    # Include the children of the listed processes (gunicorn workers, Celery's pool).
    for role in pids:
        kids = []
        for pid in pids[role]:
            with contextlib.suppress(OSError):
                kids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        pids[role] = sorted(set(pids[role] + kids))
    print(
        f"{len(cat.slugs)} models, {len(cat.downloads)} downloads, facets {sorted(cat.facet_paths)}; "
        f"pids {pids}; {args.clients} clients for {args.seconds:.0f} s",
        flush=True,
    )

    sampler = Sampler(pids, args.pg_dsn)
    sampler.start()
    finetune = None if args.no_finetune else FineTune(base, token, args.finetune_model)
    if finetune is not None:
        finetune.start()
    res = Results()
    start = time.monotonic()
    stop_at = start + args.seconds
    threads = [
        threading.Thread(target=client_loop, args=(i, base, token, cat, mix, stop_at, res), daemon=True)
        for i in range(args.clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    cpu_at_end = dict(sampler.cpu_last)  # the load's share, before the fine-tune wait
    if finetune is not None:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop waiting, report what it reached
            finetune.join(timeout=max(0.0, args.finetune_wait))
        finetune.give_up.set()
    sampler.done.set()
    sampler.join()

    report = summarise(res, elapsed, sampler, finetune, args, cpu_at_end)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if report["errors"] == 0 and report["finetune"]["status"] in ("succeeded", "skipped") else 1


def summarise(
    res: Results, elapsed: float, sampler: Sampler, finetune: FineTune | None, args: Any, cpu_at_end: dict[int, float]
) -> dict[str, Any]:
    routes = {}
    all_lat: list[float] = []
    errors: Counter[str] = Counter()
    for route in sorted(res.latencies):
        lat = res.latencies[route]
        all_lat += lat
        bad = {s: n for s, n in res.statuses[route].items() if not (s.isdigit() and int(s) in OK)}
        errors.update(bad)
        routes[route] = {
            "requests": len(lat),
            "rps": round(len(lat) / elapsed, 1),
            "p50_ms": round(percentile(lat, 0.50) * 1000, 1),
            "p95_ms": round(percentile(lat, 0.95) * 1000, 1),
            "p99_ms": round(percentile(lat, 0.99) * 1000, 1),
            "statuses": dict(res.statuses[route]),
            "app_p50_ms": round(percentile(res.app_ms[route], 0.50), 1),
            "app_p95_ms": round(percentile(res.app_ms[route], 0.95), 1),
        }
    rss = {}
    for role, series in sampler.rss.items():
        if series:
            rss[role] = {
                "start_mib": round(series[0] / 1024, 1),
                "max_mib": round(max(series) / 1024, 1),
                "end_mib": round(series[-1] / 1024, 1),
                # Warm: one minute in (caches filled, every route served);
                # growth past it is what a long run adds.
                "at_60s_mib": round(series[min(60, len(series) - 1)] / 1024, 1),
                "per_minute_mib": [round(v / 1024, 1) for v in series[::60]],
                "processes": len(sampler.pids[role]),
            }
    cpu = {
        role: round(sum(cpu_at_end.get(p, 0) - sampler.cpu_first.get(p, 0) for p in pids), 1)
        for role, pids in sampler.pids.items()
    }
    ft: dict[str, Any] = {"status": "skipped"}
    if finetune is not None:
        ft = {"status": finetune.status, "job": finetune.job_id, "detail": finetune.detail}
        if finetune.finished is not None:
            ft["seconds"] = round(finetune.finished - finetune.started, 1)
    total = len(all_lat)
    return {
        "label": args.label,
        "url": args.url,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": total,
        "rps": round(total / elapsed, 1),
        "p50_ms": round(percentile(all_lat, 0.50) * 1000, 1),
        "p95_ms": round(percentile(all_lat, 0.95) * 1000, 1),
        "p99_ms": round(percentile(all_lat, 0.99) * 1000, 1),
        "errors": sum(errors.values()),
        "errors_by_status": dict(errors),
        "routes": routes,
        "rss": rss,
        # CPU seconds used while the clients ran: the cost per request,
        # whatever else shares the machine.
        "cpu_s": {**cpu, "client": round(time.process_time(), 1)},
        "web_cpu_ms_per_request": round(1000 * cpu.get("web", 0) / max(total, 1), 2),
        "pg_connections_max": max(sampler.pg_connections) if sampler.pg_connections else None,
        "finetune": ft,
        "error_samples": res.samples,
    }


def print_report(r: dict[str, Any]) -> None:
    print(f"\n{r['label'] or r['url']}: {r['clients']} clients, {r['seconds']} s")
    print(
        f"{'route':14} {'reqs':>7} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'app p50':>8} {'app p95':>8}"
        "  statuses"
    )
    for name, s in r["routes"].items():
        print(
            f"{name:14} {s['requests']:7d} {s['rps']:7.1f} {s['p50_ms']:8.1f} {s['p95_ms']:8.1f} {s['p99_ms']:8.1f}"
            f" {s['app_p50_ms']:8.1f} {s['app_p95_ms']:8.1f}  {s['statuses']}"
        )
    print(f"{'all':14} {r['requests']:7d} {r['rps']:7.1f} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} {r['p99_ms']:8.1f}")
    print(f"errors: {r['errors']} {r['errors_by_status']}")
    for role, s in r["rss"].items():
        print(
            f"RSS {role} ({s['processes']} processes): start {s['start_mib']} MiB, at 60 s {s['at_60s_mib']},"
            f" max {s['max_mib']}, end {s['end_mib']}; per minute {s['per_minute_mib']}"
        )
    print(f"CPU seconds: {r['cpu_s']}; web CPU per request: {r['web_cpu_ms_per_request']} ms")
    if r["pg_connections_max"] is not None:
        print(f"PostgreSQL connections (max during the run): {r['pg_connections_max']}")
    print(f"fine-tune: {r['finetune']}")
    for line in r["error_samples"][:10]:
        print("  ", line)


if __name__ == "__main__":
    sys.exit(main())
