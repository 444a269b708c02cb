"""Fault runs: SIGKILL a Celery worker at each moment of a fine-tune and of a
compile, and a gunicorn worker mid-upload and mid-download, then check that
every job completed exactly once, that the artifact store holds no orphan and
that no temporary file is left behind.

    .venv/bin/python bench/faults.py [--database-url postgres://…/postgres] [--keep]

Everything runs in a fresh temporary ``MODELLIBRARY_VAR_DIR`` with real
processes: one Celery worker subprocess at a time (``FINETUNE_STALE_AFTER_S=5``
so a killed job is reclaimed fast) and one gunicorn server (one process) on a
free loopback port. With ``--database-url`` a fresh database is created on
that PostgreSQL server (and dropped at the end); SQLite otherwise. Prints a
table and exits 1 on any failure (a lost or duplicated job or variant, an
orphan blob, a temporary file left, a partial upload visible, a download that
does not resume to the right sha256).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STALE_S = 5
FINETUNE_MOMENTS = ("features", "train", "evaluate", "registering")
SCENARIOS = ("finetune", "compile", "upload", "download")
HYPERPARAMETERS = {"epochs": 3, "unfreeze_layers": 1, "batch_size": 16}


@dataclass
class Row:
    scenario: str
    kills: int = 0
    hit: str = ""
    completed: int = 0
    expected: int = 1
    duplicates: int = 0
    orphans: int = 0
    temp_left: int = 0
    resumed: str = "-"
    notes: list[str] = field(default_factory=list)
    failed: bool = False

    def fail(self, note: str) -> None:
        self.failed = True
        self.notes.append(note)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what}")


def tree_files(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def tree_entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class Proc:
    """A subprocess in its own process group, logged to a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


class Harness:
    def __init__(self, var: Path, database_url: str) -> None:
        self.var = var
        self.artifacts = var / "artifacts"
        self.tmp = var / "tmp"
        self.web_tmp = var / "web-tmp"
        self.web_tmp.mkdir(parents=True, exist_ok=True)
        self.logs = var / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "modellibrary.settings",
            "MODELLIBRARY_VAR_DIR": str(var),
            "DATABASE_URL": database_url,
            "ARTIFACT_STORAGE": "filesystem",
            "ARTIFACT_ROOT": str(self.artifacts),
            "ARTIFACT_TMP_DIR": str(self.tmp),
            "FINETUNE_STALE_AFTER_S": str(STALE_S),
            "COMPILE_STALE_AFTER_S": str(STALE_S),
            "COMPILE_ON_READY": "0",
            "MODELLIBRARY_LOCAL_HTTP": "1",
            "API_THROTTLE_USER": "off",
            "API_THROTTLE_ANON": "off",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        # kombu's filesystem transport under the fresh var folder: no other
        # run's messages.
        self.env.pop("CELERY_BROKER_URL", None)
        os.environ.pop("CELERY_BROKER_URL", None)
        os.environ.update(self.env)
        self.workers = 0
        self.worker: Proc | None = None
        self.web: Proc | None = None
        self.token = ""

    # --- processes -------------------------------------------------------
    def start_worker(self) -> Proc:
        self.workers += 1
        argv = [str(BIN / "celery"), "-A", "modellibrary", "worker", "-Q", "celery,finetune,compile", "-P", "solo"]
        argv += ["-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"]
        argv += ["-n", f"faults-{self.workers}@%h"]
        self.worker = Proc(f"worker-{self.workers}", argv, self.env, self.logs).start()
        return self.worker

    def start_web(self) -> Proc:
        env = {**self.env, "PORT": str(self.port), "WEB_WORKERS": "1", "WEB_THREADS": "4", "TMPDIR": str(self.web_tmp)}
        argv = [str(BIN / "gunicorn"), "-c", str(ROOT / "modellibrary" / "gunicorn.conf.py"), "modellibrary.wsgi"]
        self.web = Proc("web", argv, env, self.logs).start()
        wait_for(self.web_up, 60, "the web server")
        return self.web

    def web_up(self) -> bool:
        try:
            status, _, _ = self.request("GET", "/api/v1/models/")
            return status < 500
        except OSError:
            return False

    def web_worker_pid(self) -> int:
        assert self.web is not None
        assert self.web.proc is not None
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.web.proc.pid)], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
        if len(pids) != 1:
            raise RuntimeError(f"expected one gunicorn worker, found {pids}")
        return pids[0]

    def kill_web_worker(self) -> None:
        old = self.web_worker_pid()
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: self._respawned(old), 60, "gunicorn to start a new worker")
        wait_for(self.web_up, 60, "the new web worker to answer")

    def _respawned(self, old: int) -> bool:
        try:
            return self.web_worker_pid() != old
        except RuntimeError:
            return False

    # --- HTTP ------------------------------------------------------------
    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}", "Host": "127.0.0.1", **(extra or {})}

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
        c = self.conn()
        try:
            data = json.dumps(body).encode() if body is not None else None
            extra = {"Content-Type": "application/json"} if data is not None else {}
            c.request(method, path, body=data, headers=self.headers(extra))
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def api(self, method: str, path: str, body: Any = None) -> Any:
        status, _, data = self.request(method, path, body)
        if status >= 400:
            raise RuntimeError(f"{method} {path}: {status} {data[:500]!r}")
        return json.loads(data) if data else None

    def upload_dataset(self, name: str, content: bytes) -> int:
        boundary = uuid.uuid4().hex
        body = multipart(boundary, {"name": name}, "file", f"{name}.csv", content)
        c = self.conn()
        try:
            c.request(
                "POST",
                "/api/v1/datasets/",
                body=body,
                headers=self.headers({"Content-Type": f"multipart/form-data; boundary={boundary}"}),
            )
            r = c.getresponse()
            data = r.read()
            if r.status >= 400:
                raise RuntimeError(f"dataset upload: {r.status} {data[:500]!r}")
            return int(json.loads(data)["id"])
        finally:
            c.close()


def multipart(boundary: str, fields: dict[str, str], file_field: str, file_name: str, content: bytes) -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{file_name}"\r\n'
        "Content-Type: text/csv\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


def tickets_csv(n: int, seed: int) -> bytes:
    import csv
    import io

    from runners.synthetic_text import support_tickets

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    writer.writerows(support_tickets(n, seed=seed))
    return out.getvalue().encode()


# --- setup -----------------------------------------------------------------
def setup(h: Harness) -> Any:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from catalog.models import Domain, Modality, ResultKind, Visibility
    from catalog.services.registry import (
        artifact_files_store,
        model_version_create,
        model_version_finish,
        registered_model_create,
    )
    from catalog.services.taxonomy import taxonomy_load
    from catalog.services.teams import team_get_or_create
    from catalog.services.tokens import api_token_create
    from runners.testing import make_tiny_bert

    taxonomy_load(path=ROOT / "fixtures" / "taxonomy.json")
    team = team_get_or_create(name="Team A")
    user = get_user_model().objects.create_user(username="alice", password="pw-correct-horse")
    team.members.add(user)
    h.token = api_token_create(user=user, name="faults")
    bert = make_tiny_bert(h.var / "tiny-bert")
    model = registered_model_create(
        name="Tiny encoder",
        team=team,
        visibility=Visibility.INTERNAL,
        modality=Modality.objects.get(path="text/natural-language/english"),
        result_kind=ResultKind.objects.get(path="embedding/sentence"),
        domain=Domain.objects.get(path="general/wikipedia"),
    )
    names = sorted(p.name for p in bert.iterdir() if p.is_file())
    version = model_version_create(
        registered_model=model, family="sentence-encoder", files=artifact_files_store(directory=bert, names=names)
    )
    return model_version_finish(version=version)


# --- fine-tune -------------------------------------------------------------
def job_state(job_id: int) -> tuple[str, str]:
    from django.db import close_old_connections

    from catalog.models import FineTuneJob

    close_old_connections()
    status, phase = FineTuneJob.objects.filter(pk=job_id).values_list("status", "phase").get()
    return str(status), str(phase)


def finetune_fault(h: Harness, dataset_id: int, moment: str) -> Row:
    from catalog.models import FineTuneJob, ModelVersion

    row = Row(f"fine-tune: kill -9 in {moment}")
    worker = h.start_worker()
    body = {
        "base": "tiny-encoder",
        "dataset": dataset_id,
        "name": f"Fault {moment}",
        "hyperparameters": {**HYPERPARAMETERS, "holdout": 0.5 if moment == "evaluate" else 0.2},
    }
    job = h.api("POST", "/api/v1/finetune-jobs/", body)
    job_id = int(job["id"])
    seen: list[str] = []

    def at_moment() -> bool:
        status, phase = job_state(job_id)
        if not seen or seen[-1] != f"{status}/{phase}":
            seen.append(f"{status}/{phase}")
        return phase == moment or status in ("succeeded", "failed", "cancelled")

    try:
        wait_for(at_moment, 300, f"job {job_id} to reach {moment}", interval=0.02)
    except TimeoutError:
        row.fail(f"never reached {moment}: {seen}")
    status, phase = job_state(job_id)
    worker.kill()
    row.kills += 1
    row.hit = "yes" if phase == moment and status not in ("succeeded", "failed") else f"missed ({status}/{phase})"
    if row.hit != "yes":
        row.fail(f"the kill missed {moment}: {status}/{phase}")
    time.sleep(STALE_S + 0.5)  # the heartbeat goes stale
    h.start_worker()
    try:
        wait_for(lambda: job_state(job_id)[0] in ("succeeded", "failed", "cancelled"), 600, f"job {job_id} to end")
    except TimeoutError:
        row.fail("the job never finished after the restart")
    record = FineTuneJob.objects.get(pk=job_id)
    slug = f"fault-{moment}"
    versions = ModelVersion.objects.filter(registered_model__slug=slug).count()
    row.completed = 1 if record.status == "succeeded" and record.result_version_id else 0
    row.duplicates = max(0, versions - 1)
    row.notes.append(f"attempts={record.attempts}")
    if record.status != "succeeded":
        row.fail(f"status {record.status}: {record.error[:200]}")
    if versions != 1:
        row.fail(f"{versions} versions of {slug}")
    if record.attempts < 2:
        row.fail(f"attempts {record.attempts} (expected >= 2 after a kill)")
    if h.worker:
        h.worker.stop()
    return row


# --- compile ---------------------------------------------------------------
def compile_fault(h: Harness, version_id: int, moment: str) -> Row:
    from django.db import close_old_connections

    from catalog.models import Variant
    from catalog.services.compile import DONE
    from runners.compile import SPECS

    row = Row(f"compile: kill -9 in {moment}", expected=len(SPECS))
    before = set(tree_entries(h.tmp))
    worker = h.start_worker()
    h.api("POST", f"/api/v1/versions/{version_id}/compile/", {})

    def work_dir() -> Path | None:
        for name in set(tree_entries(h.tmp)) - before:
            work = h.tmp / name / "work"
            if work.is_dir():
                return work
        return None

    def at_moment() -> bool:
        work = work_dir()
        if work is None:
            return False
        if moment == "export":
            return True  # the work folder exists: the ONNX export is running
        return (work / "onnx-int8.onnx").exists() or (work / "onnx-int8-optimized.onnx").exists()

    try:
        wait_for(at_moment, 300, f"compile to reach {moment}", interval=0.02)
        work = work_dir()
        done = tree_entries(work) if work else []
        row.hit = "yes"
        row.notes.append(f"work folder at the kill: {','.join(done) or 'empty'}")
    except TimeoutError:
        row.fail(f"never reached {moment}")
    worker.kill()
    row.kills += 1
    h.start_worker()
    # The compile must come back by itself: the new worker's stale check finds
    # the killed compile's pending variants and queues it again.
    close_old_connections()

    def variants_done() -> int:
        close_old_connections()
        return Variant.objects.filter(version_id=version_id, status__in=DONE).count()

    recovered = False
    with contextlib.suppress(TimeoutError):
        recovered = bool(wait_for(lambda: variants_done() >= len(SPECS), 300, "the compile to resume by itself"))
    if recovered:
        row.notes.append("resumed by itself (stale pending variants re-queued)")
    else:
        row.fail("the compile did not resume by itself; re-requested by hand")
        h.api("POST", f"/api/v1/versions/{version_id}/compile/", {})
        try:
            wait_for(lambda: variants_done() >= len(SPECS), 600, "the re-requested compile")
        except TimeoutError:
            row.fail("the re-requested compile never finished")
    close_old_connections()
    names = list(Variant.objects.filter(version_id=version_id).values_list("name", flat=True))
    row.completed = len(set(names))
    row.duplicates = len(names) - len(set(names))
    if row.completed != len(SPECS):
        row.fail(f"variants {sorted(names)}")
    if h.worker:
        h.worker.stop()
    return row


# --- web -------------------------------------------------------------------
def upload_fault(h: Harness, size_mb: int) -> Row:
    from django.db import close_old_connections

    from catalog.models import Dataset, DatasetVersion

    row = Row("web: kill -9 mid-upload (dataset)", expected=0)
    close_old_connections()
    datasets_before = (Dataset.objects.count(), DatasetVersion.objects.count())
    blobs_before = set(tree_files(h.artifacts))
    row_bytes = len(b"slow upload row 0000000 about a broken login,login\n")
    lines = (f"slow upload row {i:07d} about a broken login,login\n" for i in range(size_mb * 1024 * 1024 // row_bytes))
    content = b"text,label\n" + "".join(lines).encode()
    boundary = uuid.uuid4().hex
    body = multipart(boundary, {"name": "Partial upload"}, "file", "partial.csv", content)
    c = h.conn()
    c.putrequest("POST", "/api/v1/datasets/", skip_host=True)
    for k, v in h.headers({"Content-Type": f"multipart/form-data; boundary={boundary}"}).items():
        c.putheader(k, v)
    c.putheader("Content-Length", str(len(body)))
    c.endheaders()
    sent, chunk = 0, 64 * 1024
    killed = False
    try:
        while sent < len(body):
            c.send(body[sent : sent + chunk])
            sent += chunk
            time.sleep(0.005)
            if not killed and sent >= len(body) // 2:
                os.kill(h.web_worker_pid(), signal.SIGKILL)
                killed = True
                row.kills += 1
        r = c.getresponse()
        row.fail(f"the upload answered {r.status} after its worker was killed")
    except OSError as exc:
        row.notes.append(f"client saw {type(exc).__name__} after {sent // 1024} KiB of {len(body) // 1024} KiB")
    finally:
        c.close()
    wait_for(h.web_up, 60, "the web server after the kill")
    # The new web worker sweeps what the killed one left, a few seconds after it boots.
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not tree_files(h.tmp) and not tree_files(h.web_tmp), 30, "the temporary files to go")
    row.temp_left = len(tree_files(h.tmp)) + len(tree_files(h.web_tmp))
    if row.temp_left:
        row.fail(f"temporary files left: {tree_files(h.tmp) + tree_files(h.web_tmp)}")
    close_old_connections()
    after = (Dataset.objects.count(), DatasetVersion.objects.count())
    new_blobs = sorted(set(tree_files(h.artifacts)) - blobs_before)
    if after != datasets_before:
        row.fail(f"dataset rows {datasets_before} -> {after}")
    if new_blobs:
        row.fail(f"new blobs {new_blobs}")
    row.orphans = len(new_blobs)
    row.duplicates = after[1] - datasets_before[1]
    return row


def download_fault(h: Harness, variant_id: int, sha256: str) -> Row:
    row = Row("web: kill -9 mid-download + Range resume", expected=1)
    path = f"/api/v1/variants/{variant_id}/download"
    got = b""
    c = h.conn()
    c.connect()
    assert c.sock is not None
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.request("GET", path, headers=h.headers())
    r = c.getresponse()
    if r.status != 200:
        row.fail(f"download answered {r.status}")
        return row
    total = int(r.getheader("Content-Length") or 0)
    try:
        got += r.read(16 * 1024)
        h.kill_web_worker()
        row.kills += 1
        while True:
            piece = r.read(8 * 1024)
            if not piece:
                break
            got += piece
            time.sleep(0.001)
    except (OSError, http.client.HTTPException) as exc:
        row.notes.append(f"client saw {type(exc).__name__}")
    finally:
        c.close()
    first = len(got)
    resumes = 0
    while len(got) < total and resumes < 5:
        resumes += 1
        c = h.conn()
        try:
            c.request("GET", path, headers=h.headers({"Range": f"bytes={len(got)}-"}))
            rr = c.getresponse()
            data = rr.read()
            if rr.status != 206:
                row.fail(f"resume answered {rr.status}")
                break
            got += data
        finally:
            c.close()
    row.resumed = f"{resumes} ({first}/{total} B before)"
    ok = hashlib.sha256(got).hexdigest() == sha256 and len(got) == total
    row.completed = 1 if ok else 0
    if first >= total:
        row.notes.append("the whole body was already buffered before the kill: nothing to resume")
    if not ok:
        row.fail("the resumed download does not match the variant's sha256")
    return row


# --- store checks ------------------------------------------------------------
def store_check(h: Harness) -> tuple[list[str], list[str], list[str]]:
    """(orphan blobs, missing blobs, temporary leftovers)."""
    from django.db import close_old_connections

    from catalog.models import DatasetVersion, ModelVersion, Variant

    close_old_connections()
    referenced: set[str] = set(DatasetVersion.objects.values_list("sha256", flat=True))
    referenced |= {s for s in Variant.objects.values_list("sha256", flat=True) if s}
    for files in ModelVersion.objects.values_list("files", flat=True):
        referenced |= {str(f["sha256"]) for f in files or []}
    # Whole blobs (sha256/), and split files (catalog/storage.py): a recipe
    # (composites/) per file and the chunks (chunks/) its recipe names.
    stored: dict[str, str] = {}
    recipes: dict[str, str] = {}
    chunks: dict[str, str] = {}
    for rel in tree_files(h.artifacts):
        parts = Path(rel).parts
        kinds = {"sha256": stored, "composites": recipes, "chunks": chunks}
        if len(parts) == 3 and parts[0] in kinds:
            kinds[parts[0]][parts[1] + parts[2]] = rel
        else:
            stored[rel] = rel
    named: set[str] = set()
    for digest, rel in recipes.items():
        if digest in referenced:
            named |= {str(seg[0]) for seg in json.loads((h.artifacts / rel).read_text())["segments"]}
    orphans = sorted(
        [rel for digest, rel in stored.items() if digest not in referenced]
        + [rel for digest, rel in recipes.items() if digest not in referenced]
        + [rel for digest, rel in chunks.items() if digest not in named]
    )
    missing = sorted(d for d in referenced if d not in stored and d not in recipes)
    missing += sorted(f"chunk {c}" for c in named if c not in chunks)
    leftovers = [f"tmp/{p}" for p in tree_files(h.tmp)] + [f"web-tmp/{p}" for p in tree_files(h.web_tmp)]
    return orphans, missing, leftovers


# --- main ------------------------------------------------------------------
def fresh_postgres(url: str) -> tuple[str, Callable[[], None]]:
    import psycopg

    name = f"faults_{os.getpid()}_{int(time.time())}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = url.rpartition("/")

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{base}/{name}", drop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL server (a fresh database is created on it)")
    parser.add_argument("--rows", type=int, default=400, help="rows of the fine-tune dataset")
    parser.add_argument("--upload-mb", type=int, default=12, help="size of the killed upload")
    parser.add_argument(
        "--only",
        choices=SCENARIOS,
        action="append",
        help="run only these scenarios (repeatable; download also runs the export compile)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    # SIGTERM (timeout, Ctrl-C's cousin) still stops the subprocesses below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    var = Path(tempfile.mkdtemp(prefix="faults-"))
    drop: Callable[[], None] = lambda: None  # noqa: E731
    if args.database_url:
        url, drop = fresh_postgres(args.database_url)
    else:
        url = f"sqlite:///{var / 'db.sqlite3'}"
    h = Harness(var, url)
    only = set(args.only or SCENARIOS)
    rows: list[Row] = []
    started = time.monotonic()
    try:
        encoder = setup(h)
        h.start_web()
        dataset_id = h.upload_dataset("Tickets", tickets_csv(args.rows, seed=3))
        # Evaluation encodes the held-out rows: four times the rows keeps that
        # phase long enough to be seen (progress is written every 0.5 s).
        large_id = h.upload_dataset("Tickets large", tickets_csv(args.rows * 4, seed=4)) if "finetune" in only else 0
        for moment in FINETUNE_MOMENTS if "finetune" in only else ():
            report(rows, finetune_fault(h, large_id if moment == "evaluate" else dataset_id, moment))
        if "compile" in only or "download" in only:
            from catalog.models import ModelVersion, Variant

            target = ModelVersion.objects.filter(registered_model__slug="fault-train").first() or encoder
            for moment, version in (("export", encoder), ("quantisation", target)):
                if "compile" in only or moment == "export":
                    report(rows, compile_fault(h, version.pk, moment))
        if "upload" in only:
            report(rows, upload_fault(h, args.upload_mb))
        if "download" in only:
            served = Variant.objects.filter(version=encoder, status="served").exclude(sha256="").first()
            if served is None:
                row = Row("web: kill -9 mid-download + Range resume")
                row.fail("no served variant to download")
                report(rows, row)
            else:
                report(rows, download_fault(h, served.pk, served.sha256))
        if h.worker:
            h.worker.stop()
        orphans, missing, leftovers = store_check(h)
        final = Row("store after all runs", expected=0)
        final.orphans, final.temp_left = len(orphans), len(leftovers)
        if orphans:
            final.fail(f"orphan blobs: {orphans}")
        if missing:
            final.fail(f"referenced but missing: {missing}")
        if leftovers:
            final.fail(f"temporary leftovers: {leftovers[:20]}{' …' if len(leftovers) > 20 else ''}")
        rows.append(final)
    except Exception as exc:
        row = Row("harness")
        row.fail(f"{type(exc).__name__}: {exc}")
        rows.append(row)
        for proc in (h.worker, h.web):
            if proc:
                print(f"--- {proc.name} log ---\n{proc.tail()}", file=sys.stderr)
    finally:
        for proc in (h.worker, h.web):
            if proc:
                proc.stop()
        try:
            drop()
        except Exception as exc:  # pragma: no cover - best effort
            print(f"could not drop the database: {exc}", file=sys.stderr)
    print_table(rows, url.split(":")[0], time.monotonic() - started)
    if not args.keep:
        import shutil

        shutil.rmtree(var, ignore_errors=True)
    else:
        print(f"kept {var}")
    return 1 if any(r.failed for r in rows) else 0


def report(rows: list[Row], row: Row) -> None:
    rows.append(row)
    print(f"  {row.scenario}: {'FAIL' if row.failed else 'ok'} {'; '.join(row.notes)}", flush=True)


def print_table(rows: list[Row], database: str, seconds: float) -> None:
    print(f"\nFault runs on {database} ({seconds:.0f} s)\n")
    head = "| scenario | kills | kill hit | completed | duplicates | orphans | temp left | resumed | result |"
    print(head)
    print("|" + "---|" * 9)
    for r in rows:
        print(
            f"| {r.scenario} | {r.kills} | {r.hit or '-'} | {r.completed}/{r.expected} | {r.duplicates} | "
            f"{r.orphans} | {r.temp_left} | {r.resumed} | {'FAIL' if r.failed else 'ok'} |"
        )
    for r in rows:
        if r.notes:
            print(f"- {r.scenario}: {'; '.join(r.notes)}")


if __name__ == "__main__":
    sys.exit(main())
