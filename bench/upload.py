"""Uploading a 1 GiB safetensors file to a live gunicorn server, vs a plain
``cp`` of the same file in the same run; plus the gunicorn worker's RSS growth.

    .venv/bin/python bench/upload.py [--size-mb 1024] [--repeat 2]

Three ways up, each on fresh bytes (the store deduplicates by sha256, so a
repeat of the same bytes would upload nothing):

* ``/hf/ upload_folder`` — ``huggingface_hub.HfApi().upload_folder`` with
  ``HF_HUB_DISABLE_XET=1`` (client sha256, preupload, LFS batch, one PUT,
  NDJSON commit → a new version), timed inside the client process;
* ``/hf/ LFS PUT`` — the basic-transfer PUT alone, sent by curl to the signed
  URL the LFS batch answers (the server streams, hashes and stores it);
* ``native API`` — ``POST /api/v1/models/{slug}/versions/`` (multipart, curl),
  when that route exists in this checkout.

The server is the one ``make run`` starts: ``scripts/run.py`` (gunicorn with
``modellibrary/gunicorn.conf.py`` — its default workers × threads — and a
Celery worker beside it), on SQLite and the filesystem store, with
``COMPILE_ON_READY=0`` so that no compile competes with the uploads. RSS is
sampled for every gunicorn process (master and workers): the growth of each
and of their sum is reported. ``sync`` runs before each timed step, so that
``cp`` and the uploads start alike (no other write-back pending).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 30522,
    "max_position_embeddings": 128,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def write_safetensors(path: Path, size_mb: int, seed: int) -> int:
    """One F32 tensor of ``size_mb`` MiB of pseudo-random bytes (distinct per seed)."""
    nbytes = size_mb << 20
    header = json.dumps(
        {"embeddings.word_embeddings.weight": {"dtype": "F32", "shape": [nbytes // 4], "data_offsets": [0, nbytes]}}
    ).encode()
    header += b" " * (-len(header) % 8)
    chunk = bytearray(os.urandom(1 << 20))
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        for i in range(size_mb):
            chunk[:8] = struct.pack("<II", seed, i)
            fh.write(chunk)
    return path.stat().st_size


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
    return seconds, out.stdout


HF_UPLOAD = """
import sys, time
from huggingface_hub import HfApi
api = HfApi()
api.create_repo(sys.argv[1])
start = time.perf_counter()
api.upload_folder(repo_id=sys.argv[1], folder_path=sys.argv[2])
print(time.perf_counter() - start)
"""


def lfs_put(base: str, token: str, repo: str, path: Path) -> float:
    """The LFS batch request (urllib), then the PUT alone (curl), timed."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    body = {
        "operation": "upload",
        "transfers": ["basic"],
        "objects": [{"oid": digest.hexdigest(), "size": path.stat().st_size}],
        "hash_algo": "sha256",
    }
    request = urllib.request.Request(
        f"{base}/hf/{repo}.git/info/lfs/objects/batch",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/vnd.git-lfs+json"},
    )
    with urllib.request.urlopen(request) as response:
        href = json.load(response)["objects"][0]["actions"]["upload"]["href"]
    seconds, out = timed(["curl", "-sS", "-f", "-o", "/dev/null", "-w", "%{http_code}", "-T", str(path), href])
    return seconds


def native_upload(base: str, token: str, slug: str, path: Path, config: Path) -> float | None:
    url = f"{base}/api/v1/models/{slug}/versions/"
    probe = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "OPTIONS",
            "-H",
            f"Authorization: Token {token}",
            url,
        ],
        capture_output=True,
        text=True,
    ).stdout
    if probe in ("404", "405"):
        return None
    seconds, _ = timed(
        [
            "curl", "-sS", "-f", "-o", "/dev/null", "-H", f"Authorization: Token {token}",
            "-F", f"files=@{path};filename=model.safetensors", "-F", f"files=@{config};filename=config.json", url,
        ]
    )  # fmt: skip
    return seconds


def setup(var: Path) -> tuple[dict[str, str], str, str]:
    env = {
        **os.environ,
        "MODELLIBRARY_VAR_DIR": str(var),
        "DJANGO_SETTINGS_MODULE": "modellibrary.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-" + "x" * 40,
        "MODELLIBRARY_LOCAL_HTTP": "1",
        "API_THROTTLE_ANON": "off",
        "API_THROTTLE_USER": "off",
        "COMPILE_ON_READY": "0",
        "DJANGO_STATIC_ROOT": str(var / "static"),
    }
    for key in ("DATABASE_URL", "CELERY_BROKER_URL", "ARTIFACT_STORAGE", "WEB_WORKERS", "WEB_THREADS"):
        env.pop(key, None)
    os.environ.update({k: env[k] for k in ("MODELLIBRARY_VAR_DIR", "DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG")})
    os.environ.update({k: env[k] for k in ("DJANGO_SECRET_KEY", "MODELLIBRARY_LOCAL_HTTP", "COMPILE_ON_READY")})
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from catalog.models import Membership
    from catalog.services.taxonomy import taxonomy_load
    from catalog.services.teams import team_get_or_create
    from catalog.services.tokens import api_token_create

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    taxonomy_load(path=ROOT / "fixtures" / "taxonomy.json")
    team = team_get_or_create(name="Bench")
    user = get_user_model().objects.create_user(username="bench")
    Membership.objects.create(team=team, user=user, role="member")
    return env, api_token_create(user=user, name="bench"), team.slug


def native_model(team_slug: str, name: str) -> str:
    from django.contrib.auth import get_user_model

    from catalog.models import Team, Visibility
    from catalog.services.registration import model_register

    user = get_user_model().objects.get(username="bench")
    return model_register(
        user=user, team=Team.objects.get(slug=team_slug), name=name, visibility=Visibility.INTERNAL
    ).slug


METHODS = ("hf upload_folder", "hf LFS PUT", "native API")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    env, token, team = setup(var)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    load_start = os.getloadavg()
    log = open(var / "server.log", "wb")  # noqa: SIM115 - closed after the server stops
    # As `make run` serves: scripts/run.py starts gunicorn (default workers ×
    # threads) and a Celery worker, each in its own session.
    server = subprocess.Popen(
        [sys.executable, "scripts/run.py", "--port", str(port)],
        cwd=ROOT,
        env={**env, "WEB_LOG_LEVEL": "warning"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client_env = {**env, "HF_ENDPOINT": f"{base}/hf", "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1"}
    client_env.update(HF_HUB_OFFLINE="0", HF_HOME=str(var / "hf-home"), HF_HUB_DISABLE_PROGRESS_BARS="1")
    results: dict[str, list[tuple[float, float]]] = {method: [] for method in METHODS}
    server_cpu: dict[str, list[float]] = {method: [] for method in METHODS}
    folder = var / "folder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CONFIG))
    weights = folder / "model.safetensors"
    size = 0
    try:
        wait_port(port, timeout=180)
        [master] = [p for p in children(server.pid) if "gunicorn" in cmdline(p)]
        # gunicorn.conf.py's default: the CPU count, 2 to 8 workers; wait until all have started.
        expected = int(env.get("WEB_WORKERS") or max(2, min(os.cpu_count() or 1, 8)))
        deadline = time.monotonic() + 120
        while len(children(master)) < expected and time.monotonic() < deadline:
            time.sleep(0.5)
        web = [master, *children(master)]
        print(f"gunicorn: master {master}, {len(web) - 1} workers", flush=True)
        # Warm the workers: imports, first queries, a small upload through every path.
        write_safetensors(weights, 1, seed=10_000)
        for i in range(2):
            timed([sys.executable, "-c", HF_UPLOAD, f"{team}/warm-{i}", str(folder)], env=client_env)
            native_upload(base, token, native_model(team, f"native-warm-{i}"), weights, folder / "config.json")
        baseline = {pid: rss_kb(pid) for pid in web}
        peak = dict(baseline)
        peak_total = [sum(baseline.values())]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                now = {pid: rss_kb(pid) for pid in web}
                for pid, kb in now.items():
                    peak[pid] = max(peak[pid], kb)
                peak_total[0] = max(peak_total[0], sum(now.values()))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        seed = 0
        for r in range(args.repeat):
            for method in METHODS:
                # Fresh bytes for every upload, and a cp of those very bytes
                # just before it: each ratio compares two runs under the same
                # load (this machine's disk is shared).
                seed += 1
                size = write_safetensors(weights, args.size_mb, seed=seed)
                copy = var / "copy.safetensors"
                cp_seconds = timed(["cp", str(weights), str(copy)])[0]
                copy.unlink()
                seconds: float | None
                cpu_before = sum(cpu_seconds(pid) for pid in web)
                if method == "hf upload_folder":
                    _, out = timed([sys.executable, "-c", HF_UPLOAD, f"{team}/bench-{r}", str(folder)], env=client_env)
                    seconds = float(out.strip().splitlines()[-1])
                elif method == "hf LFS PUT":
                    seconds = lfs_put(base, token, f"{team}/bench-{r}", weights)
                else:
                    slug = native_model(team, f"native-{r}")
                    seconds = native_upload(base, token, slug, weights, folder / "config.json")
                if seconds is not None:
                    results[method].append((seconds, cp_seconds))
                    server_cpu[method].append(sum(cpu_seconds(pid) for pid in web) - cpu_before)
                print(f"  {method}: {seconds:.2f} s, cp {cp_seconds:.2f} s", flush=True)
        stop.set()
        sampler.join()
    except BaseException:
        log.flush()
        print((var / "server.log").read_text(errors="replace")[-4000:], file=sys.stderr)
        raise
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        shutil.rmtree(var, ignore_errors=True)
    report(results, server_cpu, size, args.repeat)
    print("\ngunicorn RSS (MB): before -> peak during the uploads")
    for pid in web:
        role = "master" if pid == master else "worker"
        print(
            f"  {role} {pid}: {baseline[pid] / 1024:.1f} -> {peak[pid] / 1024:.1f}  (+{(peak[pid] - baseline[pid]) / 1024:.1f})"
        )
    total = sum(baseline.values())
    print(
        f"  all gunicorn processes: {total / 1024:.1f} -> {peak_total[0] / 1024:.1f}  "
        f"(+{(peak_total[0] - total) / 1024:.1f}; target <= 50 MB)"
    )
    print(
        f"load average (1 min) at the start {load_start[0]:.1f}, at the end {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )


def report(
    results: dict[str, list[tuple[float, float]]],
    server_cpu: dict[str, list[float]],
    size: int,
    repeat: int,
) -> None:
    """Per way up: its throughput, the paired cp's, and the ratio of the two."""
    mb = size / 1e6
    print(f"\nfile: {mb:,.0f} MB safetensors, {repeat} uploads per way, each on fresh bytes after a cp of them\n")
    for name, pairs in results.items():
        if not pairs:
            print(f"{name:18s}  (route not present in this checkout)")
            continue
        ratios = [cp / up for up, cp in pairs]
        print(
            f"{name:18s}  best {mb / min(up for up, _ in pairs):6.0f} MB/s  (cp of the same bytes: best "
            f"{mb / min(cp for _, cp in pairs):6.0f} MB/s)   ratio to cp: median {statistics.median(ratios):.2f}, "
            f"best {max(ratios):.2f}  (target >= 0.5)"
        )
        print(
            f"{'':18s}  server CPU (all gunicorn processes): {statistics.median(server_cpu[name]) / (size / 2**30):.2f} s per GiB"
        )


if __name__ == "__main__":
    main()
