"""Start the web server and one Celery worker together; Ctrl-C (or SIGTERM)
stops both, and if either dies the other is stopped too.

    python scripts/run.py [--port 8000]
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--port", default="8000")
    args = parser.parse_args()
    procs = [
        subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "modellibrary",
                "worker",
                "-Q",
                "celery,finetune,compile",
                "--concurrency",
                "1",
                "--loglevel",
                "INFO",
            ],
            cwd=ROOT,
        ),
        subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{args.port}"], cwd=ROOT),
    ]
    stopping = False

    def stop(signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.terminate()  # celery: warm shutdown; runserver: exits

    # Installed explicitly: a launcher started in the background may have
    # inherited SIGINT as ignored, and then a shell trap could not catch it.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping and all(p.poll() is None for p in procs):
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
