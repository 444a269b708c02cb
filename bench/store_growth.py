"""New bytes in the artifact store per head-only fine-tune of all-MiniLM-L6-v2.

In a fresh store (a temporary var dir, SQLite): register the packaged
all-MiniLM-L6-v2 the way ``seed_demo`` does and compile it; then upload a
labelled dataset; then — the part measured — fine-tune a head on the frozen
encoder (recipe ``manual``, ``unfreeze_layers`` 0) through the platform's own
services and compile the new version into all its variants. The figure is the
bytes of the files that appeared in the store during that part (chunks,
recipes and whole blobs alike, read from the disk).

Beside it: what the same step adds when every file is stored whole (the new
version's files and bundles whose sha256 the store did not hold — what the
store held before split files), and, with ``--whole``, the same run with
splitting switched off, measured the same way.

    .venv/bin/python bench/store_growth.py [--rows 400] [--epochs 5] [--whole]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MB = 1_000_000


def store_files(root: Path) -> dict[str, tuple[int, int]]:
    """path → (inode, size) of every file under the store."""
    out = {}
    for p in root.rglob("*"):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_ino, st.st_size)
    return out


def added(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> dict[str, int]:
    """The files that appeared, each inode counted once (a chunk hard-linked to
    a whole blob that was already there adds no bytes)."""
    seen = {ino for ino, _ in before.values()}
    out = {}
    for key, (ino, size) in sorted(after.items()):
        if key not in before and ino not in seen:
            seen.add(ino)
            out[key] = size
    return out


def by_kind(files: dict[str, int]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for key, size in files.items():
        kind = key.split("/", 1)[0]
        n, total = out.get(kind, (0, 0))
        out[kind] = (n + 1, total + size)
    return out


def bundle_manifest(sha256: str) -> dict:
    """The manifest of a stored bundle."""
    import json
    import tarfile

    from catalog.storage import artifact_open

    with artifact_open(sha256) as fh, tarfile.open(fileobj=fh, mode="r|") as tar:
        for member in tar:
            if member.name == "manifest.json":
                data = tar.extractfile(member)
                return json.load(data) if data else {}
    return {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=400, help="labelled sentences (80%% train)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--whole", action="store_true", help="store every file whole (the layout before split files)")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="bench-store-growth-"))
    env = {
        "MODELLIBRARY_VAR_DIR": str(var),
        "DJANGO_SETTINGS_MODULE": "modellibrary.settings",
        "COMPILE_ON_READY": "0",  # compiled below, in this process
    }
    for key in ("DATABASE_URL", "CELERY_BROKER_URL", "ARTIFACT_STORAGE", "ARTIFACT_ROOT", "ARTIFACT_TMP_DIR"):
        os.environ.pop(key, None)
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    import catalog.storage
    from catalog.models import ModelVersion
    from catalog.services import demo
    from catalog.services.compile import version_compile
    from catalog.services.datasets import dataset_upload
    from catalog.services.finetune import finetune_execute, finetune_request
    from catalog.services.teams import team_get_or_create
    from catalog.storage import artifact_exists
    from runners.synthetic_text import support_tickets

    if args.whole:
        catalog.storage.file_spans = lambda path: []  # type: ignore[assignment]
    root = Path(settings.ARTIFACT_ROOT)
    call_command("migrate", verbosity=0)
    demo.taxonomy_load(path=demo.TAXONOMY_FIXTURE)
    started = time.perf_counter()
    demo._seed_minilm(print)
    base = ModelVersion.objects.get(registered_model__slug="all-minilm-l6-v2")
    for v in version_compile(version_id=base.pk):
        print(f"  base {v.name}: {v.status} {v.size or 0:,} bytes {v.status_reason[:80]}")
        if v.sha256 and v.precision == "int8":
            print(f"    int8 plan {bundle_manifest(v.sha256).get('quantization', {}).get('plan')}")
    print(
        f"base registered and compiled in {time.perf_counter() - started:.0f} s; store {sum(size for _, size in store_files(root).values()) / MB:.1f} MB"
    )

    team = team_get_or_create(name="Bench")
    rows = support_tickets(args.rows, seed=5)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    dataset, _ = dataset_upload(team=team, source=io.BytesIO(buffer.getvalue().encode()), file_name="tickets.csv")

    before = store_files(root)
    started = time.perf_counter()
    job = finetune_request(
        team=team,
        base_version=base,
        dataset_version=dataset,
        name="Ticket router",
        hyperparameters={"recipe": "manual", "unfreeze_layers": 0, "epochs": args.epochs},
        enqueue=False,
    )
    done = finetune_execute(job_id=job.pk)
    if done is None or done.status != "succeeded" or done.result_version_id is None:
        raise SystemExit(
            f"the fine-tune did not succeed: {done.status if done else 'not run'}\n{done.log if done else ''}"
        )
    tuned = ModelVersion.objects.get(pk=done.result_version_id)
    tuned_time = time.perf_counter() - started
    after_finetune = store_files(root)
    variants = version_compile(version_id=tuned.pk)
    elapsed = time.perf_counter() - started
    after = store_files(root)

    new = added(before, after)
    new_finetune = added(before, after_finetune)
    new_compile = added(after_finetune, after)
    whole: dict[str, int] = {}
    for f in tuned.files:
        whole[f["sha256"]] = int(f["size"])
    for v in variants:
        if v.sha256:
            whole[v.sha256] = int(v.size or 0)
    # what storing each file whole adds: the files whose sha256 was not
    # already in the store before the step (as a whole blob or a split file)
    previously = {k.split("/", 1)[1].replace("/", "") for k in before if k.startswith(("sha256/", "composites/"))}
    whole_new = {sha: size for sha, size in whole.items() if sha not in previously}
    assert all(artifact_exists(sha) for sha in whole)

    print()
    print(f"fine-tune ({tuned_time:.0f} s) + compile: {elapsed:.0f} s; layout: {'whole' if args.whole else 'split'}")
    listing = ", ".join(f"{f['name']} {int(f['size']):,}" for f in tuned.files)
    print(f"version files: {listing}")
    for v in variants:
        print(f"  {v.name}: {v.status} bundle {v.size or 0:,} bytes {v.status_reason[:80]}")
        if v.sha256 and v.precision == "int8":
            q = bundle_manifest(v.sha256).get("quantization", {})
            inherited = q.get("inherited_from")
            print(
                f"    int8 plan {q.get('plan')} (fp32 nodes {len(q.get('fp32_nodes', []))}); "
                f"inherited from {inherited['base'] + ' ' + inherited['variant'] if inherited else 'nothing'}; "
                f"tried {[(t['plan'], t['flips']) for t in q.get('tried', [])]}"
            )
    for label, files in (("fine-tune (version files)", new_finetune), ("compile (bundles)", new_compile)):
        kinds = ", ".join(f"{k} {n} files {b / MB:.2f} MB" for k, (n, b) in sorted(by_kind(files).items()))
        print(f"  new in the store from the {label}: {sum(files.values()) / MB:.2f} MB ({kinds or 'nothing'})")
    print(f"stored whole, the same step would add: {sum(whole_new.values()) / MB:.1f} MB ({len(whole_new)} files)")
    print(f"NEW BYTES IN THE STORE: {sum(new.values()):,} ({sum(new.values()) / MB:.2f} MB; target <= 10 MB)")
    served = [v for v in variants if v.sha256 and v.precision == "fp32"]
    if served:
        # Reading a bundle back through the store (what a download streams).
        import hashlib

        from catalog.storage import artifact_chunks, artifact_open

        v = served[0]
        started = time.perf_counter()
        digest = hashlib.sha256()
        with artifact_open(v.sha256) as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        seconds = time.perf_counter() - started
        assert digest.hexdigest() == v.sha256
        print(
            f"{v.name} bundle read back and hashed from {len(artifact_chunks(v.sha256))} chunks: "
            f"{(v.size or 0) / MB / seconds:.0f} MB/s"
        )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
