"""python -m pullcli [pull] MODEL [--alias A | --version N] [--runtime R] [--precision P]
[--hardware H] [--max-p95-ms MS] -o DIR [--server URL] [--token TOKEN]

Resolves the variant, downloads its bundle with a progress bar (resuming an
interrupted download with HTTP Range), verifies its sha256, then unpacks it
into DIR, trusting nothing the server sent: the bundle must be an uncompressed
tar whose first member is manifest.json and whose other members are exactly
the manifest's files, each a plain regular file with a checked name, the
manifest's size and the manifest's sha256. Nothing the server names becomes a
path outside DIR, and a refused bundle leaves nothing behind. The API token
is sent to the API's own origin only, never on to another host a download
redirects to. Exit codes: 0 done, 1 server error, 2 nothing matches (or bad
arguments), 3 integrity failure or refused bundle.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
from hashlib import sha256 as new_sha256
from pathlib import Path
from typing import IO, Any

from pullcli.net import CHUNK, CliError, Progress, error_lines, loads, open_url, origin, printable, read_json

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 16 << 20
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# A bundle file name is one plain ASCII path component: no separators, no
# leading dot (so never "." or ".."), no NUL, no unicode look-alikes; at most
# 100 characters, so it fits a ustar header and a pax "path" is never needed.
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
# pax keys that change a member's name, link or layout are refused; these are harmless.
_PAX_ALLOWED = {"size", "mtime", "atime", "ctime", "uid", "gid", "uname", "gname", "comment", "hdrcharset"}
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x5d\x00\x00", "lzma"),
    (b"PK\x03\x04", "zip"),
)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


def refuse(message: str) -> CliError:
    return CliError(f"refusing the bundle: {message}", code=3)


# --- resolve ------------------------------------------------------------------


def resolve(server: str, token: str | None, model: str, params: dict[str, Any]) -> dict[str, Any]:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})
    url = f"{server.rstrip('/')}/api/v1/models/{urllib.parse.quote(model, safe='')}/resolve?{query}"
    try:
        with open_url(url, api=server, token=token) as response:
            return read_json(response, "resolve")
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read(1 << 16)
        lines = error_lines("resolve failed", exc.code, body)
        try:
            excluded = loads(body).get("excluded", [])
        except (ValueError, AttributeError):
            excluded = []
        for item in excluded if isinstance(excluded, list) else []:
            if isinstance(item, dict):
                lines.append(f"  - {printable(item.get('variant'), 60)}: {printable(item.get('reason'))}")
        raise CliError("\n".join(lines), code=2 if exc.code == 404 else 1) from exc


def checked_variant(variant: dict[str, Any]) -> tuple[str, int, str]:
    """The bundle's sha256, size and download URL, checked before any is used."""
    sha256, size, url = variant.get("sha256"), variant.get("size"), variant.get("download_url")
    if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256):
        raise CliError(f"the server's sha256 is not 64 hex digits: {printable(sha256, 80)}", code=3)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise CliError(f"the server's size is not a byte count: {printable(size, 80)}", code=3)
    if not isinstance(url, str):
        raise CliError("the server's reply has no download_url")
    origin(url)
    return sha256, size, url


def describe(variant: dict[str, Any]) -> str:
    p95 = variant.get("latency_p95_ms")
    fields = [printable(variant.get(k), 80) for k in ("model", "version", "name", "precision", "runtime", "hardware")]
    timing = f", p95 {p95:.2f} ms at batch 1" if isinstance(p95, int | float) else ""
    return (
        f"{fields[0]} v{fields[1]} {fields[2]} ({fields[3]}, {fields[4]}, {fields[5]}): "
        f"{variant['size']:,} bytes{timing}"
    )


# --- download -----------------------------------------------------------------


def _open_part(path: Path, append: bool) -> IO[bytes]:
    flags = os.O_WRONLY | os.O_CREAT | _O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o644), "ab" if append else "wb")


def _sha256_of(path: Path) -> Any:
    digest = new_sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest


def _content_range_start(header: str | None) -> int | None:
    match = re.fullmatch(r"bytes (\d+)-\d+/(?:\d+|\*)", (header or "").strip())
    return int(match.group(1)) if match else None


def download(
    url: str, token: str | None, dest: Path, sha256: str, size: int, quiet: bool = False, *, api: str | None = None
) -> Path:
    """Download to ``dest`` (resuming ``dest.part`` with Range) and verify the sha256.

    Never writes more than ``size`` bytes; a ``.part`` that fails the sha256 is removed.
    """
    part = dest.with_name(dest.name + ".part")
    if part.is_symlink() or (part.exists() and not part.is_file()):
        part.unlink()
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    # The part is named by the content's sha256 and checked against it at the
    # end, so a Range alone is safe; the API's ETag is that sha256 too, so it
    # gets an If-Range (an object store's ETag is something else: it gets none).
    resuming = 0 < have < size
    headers = {"Range": f"bytes={have}-"} if resuming else {}
    api_headers = {"If-Range": f'"{sha256}"'} if resuming else {}
    if have == size:  # complete already: only its hash is left to check
        digest = _sha256_of(part)
    else:
        try:
            response = open_url(url, api=api or url, token=token, headers=headers, api_headers=api_headers)
        except urllib.error.HTTPError as exc:
            with exc:
                raise CliError("\n".join(error_lines("download failed", exc.code, exc.read(1 << 16)))) from exc
        with response:
            if response.status == 206 and _content_range_start(response.headers.get("Content-Range")) != have:
                part.unlink()
                raise CliError("download failed: the server answered a different range; the download was removed", 3)
            append = resuming and response.status == 206
            if append:
                digest = _sha256_of(part)  # the part already there, then the rest as it arrives
            else:
                have, digest = 0, new_sha256()  # the whole file (a fresh start, a changed ETag, no Range support)
            progress = None if quiet else Progress(size, have)
            with _open_part(part, append=append) as out:
                while chunk := response.read(CHUNK):
                    have += len(chunk)
                    if have > size:
                        out.close()
                        part.unlink()
                        raise CliError(f"download failed: the server sent more than the {size:,} bytes it declared", 3)
                    digest.update(chunk)
                    out.write(chunk)
                    if progress:
                        progress.update(len(chunk))
            if progress:
                progress.close()
    if digest.hexdigest() != sha256:
        part.unlink()
        raise CliError(
            f"sha256 mismatch: expected {sha256}, got {digest.hexdigest()}; the download was removed", code=3
        )
    part.replace(dest)
    return dest


# --- unpack -------------------------------------------------------------------


def check_file_name(name: object) -> str:
    """``name`` if it is one safe, plain file name; refused otherwise."""
    if (
        not isinstance(name, str)
        or not FILE_NAME.fullmatch(name)
        or name.split(".")[0].lower() in _WINDOWS_DEVICES
        or name == MANIFEST
    ):
        raise refuse(f"unsafe file name {printable(repr(name), 120)}")
    return name


def manifest_files(manifest: object) -> dict[str, tuple[str, int]]:
    """The manifest's ``files``: name → (sha256, size), every field checked."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not files:
        raise refuse("manifest.json lists no files")
    expected: dict[str, tuple[str, int]] = {}
    folded: set[str] = set()
    for name, meta in files.items():
        check_file_name(name)
        if name.lower() in folded:  # two names one case-insensitive file system would merge
            raise refuse(f"manifest.json lists {printable(name)} twice (ignoring case)")
        folded.add(name.lower())
        sha256 = meta.get("sha256") if isinstance(meta, dict) else None
        size = meta.get("size") if isinstance(meta, dict) else None
        if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256):
            raise refuse(f"manifest.json: {name}: no valid sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise refuse(f"manifest.json: {name}: no valid size")
        expected[name] = (sha256, size)
    return expected


def check_uncompressed_tar(path: Path) -> None:
    """Refuse anything but an uncompressed POSIX tar, by its first header block."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    for magic, kind in _COMPRESSED:
        if head.startswith(magic):
            raise refuse(f"it is {kind}-compressed; only an uncompressed tar is accepted")
    if len(head) < 512 or head[257:262] != b"ustar":
        raise refuse("it is not a POSIX tar archive")


def check_member(member: tarfile.TarInfo) -> None:
    """A plain regular file: no link, device, fifo, folder or sparse file, no
    setuid/setgid/sticky bit, no pax header that renames it."""
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        kind = (
            "symlink"
            if member.issym()
            else "hardlink"
            if member.islnk()
            else "device"
            if member.isdev() and not member.isfifo()
            else "fifo"
            if member.isfifo()
            else "folder"
            if member.isdir()
            else "special member"
        )
        raise refuse(f"{printable(member.name, 120)} is a {kind}; only regular files are accepted")
    if member.mode & 0o7000:
        raise refuse(f"{printable(member.name, 120)} has setuid/setgid/sticky bits ({member.mode:o})")
    overrides = set(member.pax_headers) - _PAX_ALLOWED
    if overrides:
        raise refuse(f"{printable(member.name, 120)} carries pax headers {sorted(map(printable, overrides))}")


def _stream_member(source: IO[bytes], dest: Path, name: str, sha256: str, size: int) -> None:
    """Copy one member to a new file ``dest`` in bounded chunks, hashing as it goes."""
    digest, copied = new_sha256(), 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        while copied < size and (chunk := source.read(min(CHUNK, size - copied))):
            digest.update(chunk)
            out.write(chunk)
            copied += len(chunk)
    if copied != size:
        raise refuse(f"{name} is truncated ({copied:,} of {size:,} bytes)")
    if digest.hexdigest() != sha256:
        raise refuse(f"{name}: sha256 {digest.hexdigest()} does not match the manifest's {sha256}")


def extract_verified(bundle: Path, staging: Path) -> tuple[dict[str, Any], list[str]]:
    """Stream the bundle's members into ``staging`` after checking each one.

    manifest.json comes first; every other member is a file the manifest lists,
    once, with the manifest's size (checked before reading) and sha256 (checked
    while streaming). No path from the bundle or the manifest is ever opened
    except as a new file directly inside ``staging``.
    """
    try:
        with tarfile.open(bundle, mode="r:") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST:
                raise refuse(f"its first member must be {MANIFEST}")
            check_member(first)
            if first.size > MAX_MANIFEST_BYTES:
                raise refuse(f"{MANIFEST} is over {MAX_MANIFEST_BYTES:,} bytes")
            body = tar.extractfile(first).read()  # type: ignore[union-attr]
            try:
                manifest = loads(body)
            except ValueError as exc:
                raise refuse(f"{MANIFEST} is not JSON") from exc
            expected = manifest_files(manifest)
            seen: list[str] = []
            while (member := tar.next()) is not None:
                check_member(member)
                name = member.name
                if name not in expected:
                    raise refuse(f"{printable(name, 120)} is not listed in the manifest")
                if name in seen:
                    raise refuse(f"{name} appears twice")
                sha256, size = expected[name]
                if member.size != size:
                    raise refuse(f"{name} is {member.size:,} bytes; the manifest says {size:,}")
                _stream_member(tar.extractfile(member), staging / name, name, sha256, size)  # type: ignore[arg-type]
                seen.append(name)
    except tarfile.TarError as exc:
        raise refuse(f"not a readable tar ({exc})") from exc
    missing = sorted(set(expected) - set(seen))
    if missing:
        raise refuse(f"files in the manifest are missing from it: {', '.join(missing)}")
    (staging / MANIFEST).write_bytes(body)
    return manifest, seen


def unpack(bundle: Path, out: Path) -> dict[str, Any]:
    """Verify the bundle and unpack it into ``out``; refuse it leaving nothing behind.

    Files are written to a fresh folder inside ``out`` and moved into place only
    once every one has passed, so a refused bundle changes nothing in ``out``.
    """
    check_uncompressed_tar(bundle)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".pull-", dir=out))
    try:
        manifest, names = extract_verified(bundle, staging)
        for name in [*names, MANIFEST]:
            if (out / name).is_dir() and not (out / name).is_symlink():
                raise CliError(f"{out / name} is a folder; the bundle has a file of that name")
        for name in [*names, MANIFEST]:  # renames in one file system, manifest last
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


# --- command line -----------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pullcli [pull]",
        description=__doc__,
        epilog="To register a folder instead: python -m pullcli push -h",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--alias")
    which.add_argument("--version", type=int)
    p.add_argument("--runtime", default="onnxruntime")
    p.add_argument("--precision")
    p.add_argument("--hardware")
    p.add_argument("--max-p95-ms", type=float)
    p.add_argument("-o", "--output", required=True, type=Path)
    p.add_argument("--server", default=os.environ.get("MODEL_LIBRARY_URL", "http://127.0.0.1:8000"))
    p.add_argument(
        "--token", default=os.environ.get("MODEL_LIBRARY_TOKEN"), help="API token (default: $MODEL_LIBRARY_TOKEN)"
    )
    p.add_argument("--quiet", action="store_true")
    return p


def pull(args: argparse.Namespace) -> tuple[Path, list[str]]:
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
    sha256, size, url = checked_variant(variant)
    if not args.quiet:
        print(describe(variant), file=sys.stderr)
    args.output.mkdir(parents=True, exist_ok=True)
    # Named by its (checked) sha256, never by the server's model or variant names.
    bundle = args.output / f"{sha256}.tar"
    download(url, args.token, bundle, sha256, size, args.quiet, api=args.server)
    try:
        manifest = unpack(bundle, args.output)
    finally:
        bundle.unlink(missing_ok=True)
    return args.output, sorted(manifest_files(manifest))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    created = not os.path.lexists(args.output)
    try:
        out, names = pull(args)
    except (CliError, OSError, http.client.HTTPException) as exc:
        print(f"pull: {exc}", file=sys.stderr)
        if created:  # a folder this run made and left empty goes too
            with contextlib.suppress(OSError):
                args.output.rmdir()
        return exc.code if isinstance(exc, CliError) else 1
    print(f"{out}: {', '.join(names)} + {MANIFEST} (sha256 verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
