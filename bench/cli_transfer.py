"""The ``push`` and ``pull`` CLIs against a live gunicorn server, each paired
with a plain ``cp`` of the same bytes in the same run; plus each client's peak
RSS (the CLIs stream: it must not grow with the file).

    .venv/bin/python bench/cli_transfer.py [--size-mb 1024] [--repeat 2]

push: a folder (``config.json`` + a fresh ``model.safetensors`` of SIZE MiB)
sent with ``python -m pullcli push`` (one streamed multipart request; the
server hashes it into the store), as a new version each time.
pull: a SIZE MiB bundle (``model.onnx`` + ``manifest.json``) served for that
version, fetched with ``python -m pullcli`` (download, sha256 of the whole
bundle, then every member streamed, checked and moved into place).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
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
# The client under test reports its own peak RSS (VmHWM, kB) on its last
# stderr line (not ru_maxrss: Linux carries the forking parent's over exec).
CLIENT = (
    "import sys; from pullcli.__main__ import main; rc = main(sys.argv[1:]); "
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]; "
    "print(hwm.split()[1], file=sys.stderr); sys.exit(rc)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def write_weights(path: Path, size_mb: int, seed: int) -> int:
    """A valid safetensors file (one U8 tensor) of fresh bytes."""
    n = size_mb << 20
    header = json.dumps({"weight": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-len(header) % 8)
    block = bytearray(os.urandom(1 << 20))
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        for i in range(size_mb):
            block[:16] = f"{seed:08d}{i:08d}".encode()
            fh.write(block)
    return path.stat().st_size


def cp_seconds(src: Path, scratch: Path) -> float:
    os.sync()  # each timed step starts with nothing dirty (writeback throttling is shared)
    started = time.perf_counter()
    subprocess.run(["cp", str(src), str(scratch)], check=True)
    seconds = time.perf_counter() - started
    scratch.unlink()
    return seconds


def client(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """(seconds, peak RSS in kB) of one CLI run."""
    os.sync()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CLIENT, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return seconds, int(done.stderr.strip().splitlines()[-1])


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
        "WEB_WORKERS": "1",
        "WEB_THREADS": "4",
        "WEB_TIMEOUT_S": "600",
    }
    for key in ("DATABASE_URL", "CELERY_BROKER_URL", "ARTIFACT_STORAGE"):
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


def serve_bundle(slug: str, version: int, weights: Path, work: Path) -> tuple[Path, int]:
    """A served variant of ``slug`` v``version`` whose bundle holds ``weights``: (bundle, variant id)."""
    from catalog.models import ModelVersion, Variant, VariantStatus
    from catalog.storage import artifact_put_path
    from runners.compile import write_bundle

    bundle = write_bundle(work / "bundle.tar", {"model.onnx": weights}, {"labels": []})
    stored = artifact_put_path(bundle)
    variant = Variant.objects.create(
        version=ModelVersion.objects.get(registered_model__slug=slug, version=version),
        name="bench-fp32",
        format="onnx",
        precision="fp32",
        runtime="onnxruntime",
        hardware="cpu",
        status=VariantStatus.SERVED,
        sha256=stored.sha256,
        size=stored.size,
    )
    return bundle, variant.pk


def shell_seconds(command: str) -> float:
    os.sync()
    started = time.perf_counter()
    subprocess.run(["bash", "-c", command], check=True, capture_output=True)
    return time.perf_counter() - started


Runs = dict[str, list[tuple[float, float, int]]]


def push_both(
    r: int, folder: Path, var: Path, base: str, token: str, team: str, env: dict[str, str], runs: Runs
) -> int:
    """The push CLI, then curl -F with the same files' layout (fresh bytes each): versions 2r+1, 2r+2."""
    weights = folder / "model.safetensors"
    size = write_weights(weights, SIZE_MB, seed=2 * r)
    cp = cp_seconds(weights, var / "copy")
    seconds, rss = client(["push", str(folder), "--model", f"{team}/bench", "--server", base, "--token", token,
                           "--quiet"], env)  # fmt: skip
    runs["push (python -m pullcli push)"].append((seconds, cp, rss))
    write_weights(weights, SIZE_MB, seed=2 * r + 1)
    cp = cp_seconds(weights, var / "copy")
    parts = " ".join(f"-F files=@{p}" for p in sorted(folder.iterdir()))
    seconds = shell_seconds(
        f"curl -sS -f -o /dev/null -H 'Authorization: Token {token}' {parts} {base}/api/v1/models/bench/versions/"
    )
    runs["push (curl -F, same request)"].append((seconds, cp, 0))
    return size


def pull_both(r: int, weights: Path, var: Path, base: str, token: str, env: dict[str, str], runs: Runs) -> None:
    """The pull CLI, then curl + sha256sum + tar -x of the same bundle."""
    bundle, variant_id = serve_bundle("bench", 2 * r + 1, weights, var)
    cp = cp_seconds(bundle, var / "copy")
    out = var / "pulled"
    seconds, rss = client(["bench", "--version", str(2 * r + 1), "--precision", "fp32", "-o", str(out), "--server",
                           base, "--token", token, "--quiet"], env)  # fmt: skip
    runs["pull (python -m pullcli)"].append((seconds, cp, rss))
    shutil.rmtree(out)
    seconds = shell_seconds(
        f"curl -sS -f -o {var}/b.tar -H 'Authorization: Token {token}' {base}/api/v1/variants/{variant_id}/download"
        f" && sha256sum {var}/b.tar && mkdir {out} && tar -xf {var}/b.tar -C {out} && rm {var}/b.tar"
    )
    runs["pull (curl + sha256sum + tar -x)"].append((seconds, cp, 0))
    shutil.rmtree(out)
    bundle.unlink()


SIZE_MB = 1024


def main() -> None:
    global SIZE_MB
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    SIZE_MB = args.size_mb
    var = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    env, token, team = setup(var)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    gunicorn = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "modellibrary/gunicorn.conf.py", "modellibrary.wsgi"],
        cwd=ROOT,
        env={**env, "WEB_BIND": f"127.0.0.1:{port}", "WEB_LOG_LEVEL": "warning"},
    )
    folder = var / "folder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CONFIG))
    runs: Runs = {
        "push (python -m pullcli push)": [],
        "push (curl -F, same request)": [],
        "pull (python -m pullcli)": [],
        "pull (curl + sha256sum + tar -x)": [],
    }
    size = 0
    try:
        wait_port(port)
        for r in range(args.repeat):
            size = push_both(r, folder, var, base, token, team, env, runs)
            pull_both(r, folder / "model.safetensors", var, base, token, env, runs)
    finally:
        gunicorn.terminate()
        gunicorn.wait(20)
        shutil.rmtree(var, ignore_errors=True)
    report(runs, size, args.repeat)


def report(runs: Runs, size: int, repeat: int) -> None:
    mb = size / 1e6
    print(f"{mb:,.0f} MB per transfer, {repeat} of each, each paired with a cp of the same bytes just before it\n")
    print("| way | best | median | cp (paired, median) | ratio to cp (median) | client peak RSS |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, results in runs.items():
        rates = [mb / s for s, _, _ in results]
        cps = [mb / c for _, c, _ in results]
        ratios = [c / s for s, c, _ in results]
        rss = max(r for _, _, r in results)
        print(
            f"| {name} | {max(rates):,.0f} MB/s | {statistics.median(rates):,.0f} MB/s | "
            f"{statistics.median(cps):,.0f} MB/s | {statistics.median(ratios):.2f} | "
            f"{f'{rss / 1024:.1f} MB' if rss else '—'} |"
        )


if __name__ == "__main__":
    main()
