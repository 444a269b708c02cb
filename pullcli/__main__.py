"""python -m pullcli MODEL [--alias A | --version N] [--runtime R] [--precision P]
[--hardware H] [--max-p95-ms MS] -o DIR [--server URL] [--token TOKEN]

Resolves the variant, downloads its bundle with a progress bar (resuming an
interrupted download with HTTP Range), verifies its sha256 and the sha256 of
every file in its manifest, and unpacks it. Exit codes: 0 done, 1 usage or
server error, 2 nothing matches, 3 integrity failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


class PullError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _request(url: str, token: str | None, headers: dict[str, str] | None = None, method: str = "GET") -> Any:
    req = urllib.request.Request(url, method=method, headers=dict(headers or {}))
    if token:
        req.add_header("Authorization", f"Token {token}")
    return urllib.request.urlopen(req, timeout=60)  # noqa: S310 - the server URL is the user's


def resolve(server: str, token: str | None, model: str, params: dict[str, Any]) -> dict[str, Any]:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})
    url = f"{server.rstrip('/')}/api/v1/models/{urllib.parse.quote(model)}/resolve?{query}"
    try:
        with _request(url, token) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        try:
            detail = json.loads(body)
        except ValueError:
            raise PullError(f"resolve failed: HTTP {exc.code}: {body[:300]}") from exc
        lines = [f"resolve failed: HTTP {exc.code}: {detail.get('detail', detail)}"]
        for item in detail.get("excluded", []):
            lines.append(f"  - {item['variant']}: {item['reason']}")
        raise PullError("\n".join(lines), code=2 if exc.code == 404 else 1) from exc


class Progress:
    def __init__(self, total: int, start: int, stream: Any = sys.stderr) -> None:
        self.total, self.done, self.stream = total, start, stream
        self.started, self.last = time.monotonic(), 0.0
        self.initial = start

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= 0.1 or self.done >= self.total:
            self.last = now
            frac = self.done / self.total if self.total else 1.0
            rate = (self.done - self.initial) / max(now - self.started, 1e-6) / 1e6
            bar = "#" * int(frac * 30)
            self.stream.write(
                f"\r[{bar:<30}] {frac:6.1%} {self.done / 1e6:8.1f}/{self.total / 1e6:.1f} MB {rate:6.1f} MB/s"
            )
            self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")


def download(url: str, token: str | None, dest: Path, sha256: str, size: int, quiet: bool = False) -> Path:
    """Download to ``dest`` (resuming ``dest.part``) and verify the sha256."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    headers = {}
    if 0 < have < size:
        headers = {"Range": f"bytes={have}-", "If-Range": f'"{sha256}"'}
    if have < size:
        try:
            response = _request(url, token, headers)
        except urllib.error.HTTPError as exc:
            raise PullError(f"download failed: HTTP {exc.code}: {exc.read()[:300]!r}") from exc
        with response:
            if response.status == 200 and have:
                have = 0  # the server sent the whole file (a changed ETag or no range support)
            mode = "ab" if response.status == 206 else "wb"
            progress = None if quiet else Progress(size, have)
            with open(part, mode) as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    if progress:
                        progress.update(len(chunk))
            if progress:
                progress.close()
    digest = hashlib.sha256()
    with open(part, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        part.unlink()
        raise PullError(
            f"sha256 mismatch: expected {sha256}, got {digest.hexdigest()}; the download was removed", code=3
        )
    part.replace(dest)
    return dest


def unpack(bundle: Path, out: Path) -> dict[str, Any]:
    """Extract the bundle's regular files (no links, no absolute or parent paths)
    and check each against the manifest's sha256."""
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(bundle) as tar:
        members = tar.getmembers()
        for m in members:
            name = Path(m.name)
            if not m.isfile() or name.is_absolute() or ".." in name.parts or len(name.parts) != 1:
                raise PullError(f"refusing bundle member {m.name!r}", code=3)
        tar.extractall(out, members=members, filter="data")
    manifest = json.loads((out / "manifest.json").read_text())
    for name, meta in manifest.get("files", {}).items():
        digest = hashlib.sha256((out / name).read_bytes()).hexdigest()
        if digest != meta["sha256"]:
            raise PullError(f"{name}: sha256 {digest} does not match the manifest", code=3)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pull", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--alias")
    which.add_argument("--version", type=int)
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--precision")
    parser.add_argument("--hardware")
    parser.add_argument("--max-p95-ms", type=float)
    parser.add_argument("-o", "--output", required=True, type=Path)
    parser.add_argument("--server", default=os.environ.get("MODEL_LIBRARY_URL", "http://127.0.0.1:8000"))
    parser.add_argument(
        "--token", default=os.environ.get("MODEL_LIBRARY_TOKEN"), help="API token (default: $MODEL_LIBRARY_TOKEN)"
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        variant = resolve(
            args.server,
            args.token,
            args.model,
            {
                "alias": args.alias,
                "version": args.version,
                "runtime": args.runtime,
                "precision": args.precision,
                "hardware": args.hardware,
                "max_p95_ms": args.max_p95_ms,
            },
        )
        if not args.quiet:
            print(
                f"{variant['model']} v{variant['version']} {variant['name']} ({variant['precision']}, "
                f"{variant['runtime']}, {variant['hardware']}): {variant['size']:,} bytes, "
                f"p95 {variant['latency_p95_ms']:.2f} ms at batch 1",
                file=sys.stderr,
            )
        args.output.mkdir(parents=True, exist_ok=True)
        bundle = args.output / f"{variant['model']}-v{variant['version']}-{variant['name']}.tar"
        download(variant["download_url"], args.token, bundle, variant["sha256"], int(variant["size"]), args.quiet)
        manifest = unpack(bundle, args.output)
        bundle.unlink()
    except PullError as exc:
        print(f"pull: {exc}", file=sys.stderr)
        return exc.code
    except (urllib.error.URLError, OSError) as exc:
        print(f"pull: {exc}", file=sys.stderr)
        return 1
    print(f"{args.output}: {', '.join(sorted(manifest['files']))} + manifest.json (sha256 verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
