"""Serve the app with gunicorn and run the Celery worker(s) beside it; Ctrl-C
(or SIGTERM) stops them all gracefully. A worker that dies is started again;
if the web server dies, everything stops.

    python scripts/run.py [--port 8000] [--web-workers N] [--threads N]
                          [--worker-queues celery,finetune,compile ...]

The web server is the production one (gunicorn, gthread workers × threads
from the CPU count, see modellibrary/gunicorn.conf.py; static files by
WhiteNoise). ``--worker-queues`` may be given several times: one Celery worker
per value, e.g. ``--worker-queues celery,finetune --worker-queues compile``
keeps compiles from delaying fine-tunes.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
    parser.add_argument("--web-workers", type=int, default=None, help="gunicorn processes (default: CPU count)")
    parser.add_argument("--threads", type=int, default=None, help="threads per gunicorn process (default 4)")
    parser.add_argument(
        "--worker-queues",
        action="append",
        default=None,
        help="queues of one Celery worker; repeat for several workers (default: one worker, every queue)",
    )
    args = parser.parse_args()
    env = dict(os.environ)
    env["PORT"] = str(args.port)
    # Plain HTTP on loopback: the HTTPS-only production settings stay off
    # (modellibrary/settings.py, "Security").
    env.setdefault("MODELLIBRARY_LOCAL_HTTP", "1")
    if args.web_workers:
        env["WEB_WORKERS"] = str(args.web_workers)
    if args.threads:
        env["WEB_THREADS"] = str(args.threads)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"], cwd=ROOT, env=env, check=True
    )
    commands = [
        [
            str(BIN / "celery"),
            "-A",
            "modellibrary",
            "worker",
            "-Q",
            queues,
            "--concurrency",
            "1",
            "--hostname",
            f"worker{i}@%h",
            "--loglevel",
            "INFO",
        ]
        for i, queues in enumerate(args.worker_queues or ["celery,finetune,compile"], start=1)
    ]
    commands.append([str(BIN / "gunicorn"), "-c", "modellibrary/gunicorn.conf.py", "modellibrary.wsgi"])
    # Each child in its own session: Ctrl-C reaches this launcher only, which
    # then stops the children with SIGTERM (gunicorn and Celery: graceful).
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True) for cmd in commands]
    stopping = False

    def stop(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.terminate()

    # Installed explicitly: a launcher started in the background may have
    # inherited SIGINT as ignored, and then a shell trap could not catch it.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    web = len(procs) - 1
    while not stopping and procs[web].poll() is None:
        for i, p in enumerate(procs[:web]):
            if p.poll() is not None and not stopping:
                # A worker that died (killed, out of memory) is started again;
                # its job goes stale and is claimed again (heartbeat).
                print(f"run.py: worker {i + 1} exited ({p.returncode}); starting it again", file=sys.stderr)
                procs[i] = subprocess.Popen(commands[i], cwd=ROOT, env=env, start_new_session=True)
        time.sleep(0.3)
    stop()
    deadline = time.monotonic() + 30
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
