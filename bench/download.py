"""A 1 GB variant bundle downloaded over loopback from the app under gunicorn
vs the same file from nginx with sendfile, in one run; plus the gunicorn
worker's RSS growth during the download.

    .venv/bin/python bench/download.py [--size-mb 1024] [--repeat 3]

Installs Debian's nginx if it is missing (apt-get). Uses curl as the client.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # the process is gone
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def curl(url: str, extra: list[str] | None = None) -> tuple[float, int]:
    """(seconds, bytes) for one download to /dev/null."""
    out = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{time_total} %{size_download} %{http_code}", *(extra or []), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if out[2] not in ("200", "206"):
        raise RuntimeError(f"HTTP {out[2]} from {url}")
    return float(out[0]), int(out[1])


def ensure_nginx() -> str:
    path = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(path).exists():
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "nginx-light"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    var = Path(tempfile.mkdtemp(prefix="bench-download-"))
    env = {
        **os.environ,
        "MODELLIBRARY_VAR_DIR": str(var),
        "DJANGO_SETTINGS_MODULE": "modellibrary.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-" + "x" * 40,
        # Plain HTTP on loopback, and no request-rate limit on the measured client.
        "MODELLIBRARY_LOCAL_HTTP": "1",
        "API_THROTTLE_ANON": "off",
        "API_THROTTLE_USER": "off",
    }
    for key in ("DATABASE_URL", "CELERY_BROKER_URL", "ARTIFACT_STORAGE"):
        env.pop(key, None)
    os.environ.update(
        {k: env[k] for k in ("MODELLIBRARY_VAR_DIR", "DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG", "DJANGO_SECRET_KEY")}
    )
    import django

    django.setup()
    from django.core.management import call_command

    from catalog.models import Domain, Modality, ResultKind, Variant, VariantStatus
    from catalog.services.registry import model_version_create, model_version_finish, registered_model_create
    from catalog.services.taxonomy import taxonomy_load
    from catalog.services.teams import team_get_or_create
    from catalog.storage import artifact_key, artifact_put_path

    call_command("migrate", verbosity=0)
    taxonomy_load(path=ROOT / "fixtures" / "taxonomy.json")
    blob = var / "bundle.bin"
    with open(blob, "wb") as fh:
        chunk = os.urandom(1 << 20)
        for i in range(args.size_mb):
            fh.write(chunk[i % 7 :] + chunk[: i % 7])
    stored = artifact_put_path(blob)
    blob.unlink()
    model = registered_model_create(
        name="Big",
        team=team_get_or_create(name="Bench"),
        modality=Modality.objects.get(path="text"),
        result_kind=ResultKind.objects.get(path="classification"),
        domain=Domain.objects.get(path="general"),
    )
    version = model_version_create(
        registered_model=model,
        family="text-classifier",
        files=[{"name": "model.safetensors", "sha256": stored.sha256, "size": stored.size}],
    )
    model_version_finish(version=version)
    variant = Variant.objects.create(
        version=version,
        name="onnx-fp32",
        format="onnx",
        precision="fp32",
        runtime="onnxruntime",
        status=VariantStatus.SERVED,
        sha256=stored.sha256,
        size=stored.size,
    )
    store_root = var / "artifacts"

    app_port, nginx_port = free_port(), free_port()
    gunicorn = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "modellibrary.wsgi",
            "-b",
            f"127.0.0.1:{app_port}",
            "-w",
            "1",
            "--timeout",
            "300",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
    )
    nginx_bin = ensure_nginx()
    conf = var / "nginx.conf"
    conf.write_text(f"""
daemon off; user root; worker_processes 1; pid {var}/nginx.pid; error_log {var}/nginx-error.log;
events {{ worker_connections 64; }}
http {{ access_log off; sendfile on; tcp_nopush on;
  server {{ listen 127.0.0.1:{nginx_port}; root {store_root}; }} }}
""")
    nginx = subprocess.Popen([nginx_bin, "-c", str(conf), "-p", str(var)])
    try:
        wait_port(app_port)
        wait_port(nginx_port)
        worker_pid = int(
            subprocess.run(
                ["pgrep", "-P", str(gunicorn.pid)], capture_output=True, text=True, check=True
            ).stdout.split()[0]
        )
        app_url = f"http://127.0.0.1:{app_port}/api/v1/variants/{variant.pk}/download"
        nginx_url = f"http://127.0.0.1:{nginx_port}/{artifact_key(stored.sha256)}"
        curl(app_url, ["-r", "0-1023"])  # warm the worker (imports, first query)
        baseline = rss_kb(worker_pid)
        peak = [baseline]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kb(worker_pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        app_times, nginx_times, range_times = [], [], []
        half = stored.size // 2
        for _ in range(args.repeat):
            seconds, n = curl(app_url)
            assert n == stored.size
            app_times.append(seconds)
            seconds, n = curl(nginx_url)
            assert n == stored.size
            nginx_times.append(seconds)
            seconds, n = curl(app_url, ["-r", f"{half}-"])
            assert n == stored.size - half
            range_times.append(seconds * stored.size / n)
        stop.set()
        sampler.join()
    finally:
        gunicorn.terminate()
        nginx.terminate()
        gunicorn.wait(10)
        nginx.wait(10)
    shutil.rmtree(var, ignore_errors=True)
    mb = stored.size / 1e6
    app_best, nginx_best, range_best = min(app_times), min(nginx_times), min(range_times)
    print(f"file: {mb:,.0f} MB bundle, {args.repeat} downloads each over loopback with curl\n")
    print(
        f"app (gunicorn, 1 sync worker, FileResponse → sendfile): best {mb / app_best:7.0f} MB/s"
        f"  median {mb / statistics.median(app_times):7.0f} MB/s"
    )
    print(
        f"nginx (sendfile on):                               best {mb / nginx_best:7.0f} MB/s"
        f"  median {mb / statistics.median(nginx_times):7.0f} MB/s"
    )
    print(f"app, resumed from the middle (206, streamed in 1 MiB reads): best {mb / range_best:7.0f} MB/s")
    print(
        f"\nratio app / nginx: {nginx_best / app_best:.2f} best-of-{args.repeat}, "
        f"{statistics.median(nginx_times) / statistics.median(app_times):.2f} median  (target >= 0.8)"
    )
    print(
        f"gunicorn worker RSS: {baseline / 1024:.1f} MB before, {peak[0] / 1024:.1f} MB peak during the downloads: "
        f"+{(peak[0] - baseline) / 1024:.1f} MB  (target <= 30 MB)"
    )
    shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
