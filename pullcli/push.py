"""python -m pullcli push FOLDER --model TEAM/NAME [--server URL] [--token TOKEN]
[--visibility private|internal] [--summary TEXT] [--card FILE]
[--modality PATH] [--result PATH] [--domain PATH]

Registers TEAM/NAME (or, if TEAM already has it, adds to it) and uploads the
folder's files as its next version: one streamed multipart request, never a
whole file in memory, with a progress bar on stderr. Each file's sha256 is
computed while it is sent and compared with what the server stored; the
sha256 lines (`sha256sum -c` format) go to stdout.

Refused locally, before anything is sent: pickle weights (*.bin, *.pt, *.pth,
*.ckpt, *.pkl, *.pickle, *.joblib; convert them to safetensors), links,
subfolders, anything but regular files, names that are not plain ASCII
letters, digits, '.', '_' and '-' (so no path separators, '..', NUL or
look-alikes). Hidden entries (.git, .gitattributes) are skipped. Exit codes:
0 done, 1 server error, 2 refused locally (or bad arguments), 3 the server
stored different bytes.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import secrets
import ssl
import stat
import sys
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256 as new_sha256
from pathlib import Path
from typing import Any

from pullcli.net import (
    CHUNK,
    CliError,
    Progress,
    auth_headers,
    error_lines,
    open_url,
    opener,
    origin,
    printable,
    read_json,
)

# The server's rules (catalog/intake/names.py), applied before sending anything.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib")
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
SLUG = re.compile(r"[a-z0-9][a-z0-9-]*")
VISIBILITIES = ("private", "internal")
MAX_CARD_BYTES = 1 << 20
REFUSED, MISMATCH = 2, 3


@dataclass
class LocalFile:
    name: str
    path: Path
    size: int
    sha256: str = ""


# --- what may be sent ----------------------------------------------------------


def folder_files(folder: Path) -> tuple[list[LocalFile], list[str]]:
    """The folder's files to send, or every reason to send nothing.

    Returns (files, skipped hidden names); raises CliError(code 2) listing every
    problem at once.
    """
    if not folder.is_dir():
        raise CliError(f"{folder} is not a folder", REFUSED)
    problems: list[str] = []
    files: list[LocalFile] = []
    skipped: list[str] = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            name, shown = entry.name, printable(entry.name, 120)
            if name.startswith(".") and FILE_NAME.fullmatch(name[1:]):  # .git, .gitattributes: not the model's
                skipped.append(shown)
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                problems.append(f"{shown}: a symbolic link (send the file itself)")
            elif stat.S_ISDIR(st.st_mode):
                problems.append(f"{shown}/: a subfolder (only a flat folder can be pushed)")
            elif not stat.S_ISREG(st.st_mode):
                problems.append(f"{shown}: not a regular file")
            elif not FILE_NAME.fullmatch(name) or ".." in name:
                problems.append(f"{shown}: file names are plain ASCII letters, digits, '.', '_' and '-'")
            elif name.lower().endswith(PICKLE_SUFFIXES):
                problems.append(f"{shown}: pickle weights are refused (save them with safetensors)")
            else:
                files.append(LocalFile(name, Path(entry.path), st.st_size))
    if not files and not problems:
        problems.append("no files to send")
    if problems:
        raise CliError(
            "refusing to push " + str(folder) + ", nothing was sent:\n" + "\n".join(f"  - {p}" for p in problems),
            REFUSED,
        )
    return files, skipped


def model_spec(value: str) -> tuple[str, str]:
    team, _, name = value.partition("/")
    if not SLUG.fullmatch(team) or not name.strip():
        raise argparse.ArgumentTypeError("give the model as TEAM/NAME, TEAM being the team's slug")
    return team, name.strip()


# --- HTTP -----------------------------------------------------------------------


def _url(server: str, path: str) -> str:
    return f"{server.rstrip('/')}/{path.lstrip('/')}"


def _post_json(server: str, token: str, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    """POST a JSON body; returns (status, body) for any answer, redirects not followed."""
    url = _url(server, path)
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Accept": "application/json", **auth_headers(url, server, token)},
    )
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, response.read(1 << 22)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(1 << 16)


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    scheme, host, port = origin(url)
    if scheme == "https":
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=ssl.create_default_context())
    return http.client.HTTPConnection(host, port, timeout=timeout)


def multipart_parts(files: list[LocalFile], boundary: str) -> tuple[list[bytes], bytes, int]:
    """Each file's part header, the closing boundary, and the body's exact length."""
    heads = [
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="files"; filename="{f.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for f in files
    ]
    tail = f"--{boundary}--\r\n".encode()
    return heads, tail, sum(len(h) + f.size + 2 for h, f in zip(heads, files, strict=True)) + len(tail)


def multipart_body(files: list[LocalFile], heads: list[bytes], tail: bytes) -> Iterator[bytes]:
    """The body, read from disk in 1 MiB chunks; sets each file's sha256 as it goes."""
    for head, f in zip(heads, files, strict=True):
        yield head
        digest, sent = new_sha256(), 0
        fd = os.open(f.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
        with os.fdopen(fd, "rb") as fh:
            while sent < f.size and (chunk := fh.read(min(CHUNK, f.size - sent))):
                digest.update(chunk)
                sent += len(chunk)
                yield chunk
            if sent != f.size or fh.read(1):
                raise CliError(f"{f.name} changed while it was being sent; nothing was stored")
        f.sha256 = digest.hexdigest()
        yield b"\r\n"
    yield tail


def upload(server: str, token: str, slug: str, files: list[LocalFile], quiet: bool) -> tuple[int, bytes]:
    """POST the files as one streamed multipart/form-data request."""
    url = _url(server, f"/api/v1/models/{urllib.parse.quote(slug, safe='')}/versions/")
    boundary = "modellibrary-" + secrets.token_hex(16)
    heads, tail, length = multipart_parts(files, boundary)
    conn = _connection(url, timeout=60)
    progress = None if quiet else Progress(length)
    try:
        conn.putrequest("POST", urllib.parse.urlsplit(url).path)
        for key, value in {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(length),
            "Accept": "application/json",
            **auth_headers(url, server, token),
        }.items():
            conn.putheader(key, value)
        conn.endheaders()
        try:
            for piece in multipart_body(files, heads, tail):
                conn.send(piece)
                if progress:
                    progress.update(len(piece))
        except OSError as exc:
            # The server may refuse early (size, auth) and close: show its answer if it sent one.
            try:
                response = conn.getresponse()
                return response.status, response.read(1 << 16)
            except (OSError, http.client.HTTPException):
                raise CliError(f"upload failed: {exc}") from exc
        if progress:
            progress.close()
            progress = None
        if conn.sock is not None:
            conn.sock.settimeout(600)  # the server checks and stores what it received
        response = conn.getresponse()
        return response.status, response.read(1 << 22)
    finally:
        if progress:
            progress.close()
        conn.close()


# --- the command ------------------------------------------------------------------


def model_create(args: argparse.Namespace, team: str, name: str) -> str:
    """Register TEAM/NAME and return its slug; an existing one is reused."""
    body: dict[str, Any] = {"name": name, "team": team, "visibility": args.visibility}
    if args.summary is not None:
        body["summary"] = args.summary
    if args.card is not None:
        if args.card.stat().st_size > MAX_CARD_BYTES:
            raise CliError(f"{args.card} is over {MAX_CARD_BYTES:,} bytes", REFUSED)
        body["card"] = args.card.read_text(encoding="utf-8")
    for key in ("modality", "result", "domain"):
        if getattr(args, key):
            body[key] = getattr(args, key)
    status, reply = _post_json(args.server, args.token, "/api/v1/models/", body)
    if status == 201:
        created = _json(reply, "register")
        if not args.quiet:
            print(f"registered {team}/{printable(name)}: {printable(created.get('url', ''))}", file=sys.stderr)
        return _slug(created)
    if status == 409:
        existing = _json(reply, "register")
        slug = _slug(existing) if "slug" in existing else slugify(name)
        owner = model_team(args.server, args.token, slug)
        if owner is None:
            raise CliError(f"register failed: the name {slug!r} is taken by a model you cannot see; choose another")
        if owner != team:
            raise CliError(
                f"register failed: {slug!r} is team {printable(owner, 60)}'s model, not {team}'s; "
                "choose another name (or name its team)"
            )
        if not args.quiet:
            print(f"{team}/{printable(name)} exists: pushing a new version to it", file=sys.stderr)
        return slug
    raise CliError("\n".join(error_lines("register failed", status, reply)))


def model_team(server: str, token: str, slug: str) -> str | None:
    """The team slug of an existing model, or None if it is not visible to us."""
    url = _url(server, f"/api/v1/models/{urllib.parse.quote(slug, safe='')}/")
    try:
        with open_url(url, api=server, token=token) as response:
            team = read_json(response, "model").get("team")
    except urllib.error.HTTPError as exc:
        with exc:
            if exc.code == 404:
                return None
            raise CliError("\n".join(error_lines("model lookup failed", exc.code, exc.read(1 << 16)))) from exc
    return team if isinstance(team, str) else None


def slugify(name: str) -> str:
    """The slug the server derives from a name (Django's ``slugify``, cut to 120)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", ascii_name.lower())).strip("-_")
    return slug[:120].strip("-")


def _json(body: bytes, what: str) -> dict[str, Any]:
    return read_json(io.BytesIO(body), what)


def _slug(reply: dict[str, Any]) -> str:
    slug = reply.get("slug")
    if not isinstance(slug, str) or not slug or "/" in slug or slug in (".", ".."):
        raise CliError(f"the server's reply has no usable slug: {printable(slug, 80)}")
    return slug


def check_stored(files: list[LocalFile], reply: dict[str, Any]) -> list[str]:
    """Every file sent, as the server says it stored it (same sha256 and size)."""
    stored = {item.get("name"): item for item in reply.get("files", []) if isinstance(item, dict) and "name" in item}
    problems = []
    for f in files:
        got = stored.get(f.name)
        if got is None:
            problems.append(f"{f.name}: not in the server's list of stored files")
        elif got.get("sha256") != f.sha256 or got.get("size") != f.size:
            problems.append(
                f"{f.name}: sent sha256 {f.sha256} ({f.size:,} bytes), the server stored "
                f"{printable(got.get('sha256'), 80)} ({printable(got.get('size'), 20)} bytes)"
            )
    return problems


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pullcli push", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("folder", type=Path)
    p.add_argument("--model", required=True, type=model_spec, metavar="TEAM/NAME")
    p.add_argument("--server", default=os.environ.get("MODEL_LIBRARY_URL", "http://127.0.0.1:8000"))
    p.add_argument(
        "--token", default=os.environ.get("MODEL_LIBRARY_TOKEN"), help="API token (default: $MODEL_LIBRARY_TOKEN)"
    )
    p.add_argument("--visibility", choices=VISIBILITIES, default="private", help="for a new model (default: private)")
    p.add_argument("--summary", help="one line, for a new model")
    p.add_argument("--card", type=Path, help="a Markdown model card, for a new model")
    p.add_argument("--modality", help="intake modality tree path, e.g. text/natural-language")
    p.add_argument("--result", help="result kind tree path, e.g. classification/multiclass")
    p.add_argument("--domain", help="domain tree path")
    p.add_argument("--quiet", action="store_true")
    return p


def push(args: argparse.Namespace) -> int:
    team, name = args.model
    files, skipped = folder_files(args.folder)
    if not args.token:
        raise CliError("push needs an API token: --token or $MODEL_LIBRARY_TOKEN", REFUSED)
    origin(args.server)
    if skipped and not args.quiet:
        print(f"skipped hidden: {', '.join(skipped)}", file=sys.stderr)
    slug = model_create(args, team, name)
    if not args.quiet:
        total = sum(f.size for f in files)
        print(f"sending {len(files)} files, {total:,} bytes", file=sys.stderr)
    status, body = upload(args.server, args.token, slug, files, args.quiet)
    if status != 201:
        raise CliError("\n".join(error_lines("upload failed", status, body)))
    reply = _json(body, "upload")
    for f in files:
        print(f"{f.sha256}  {f.name}")
    problems = check_stored(files, reply)
    if problems:
        raise CliError("the server stored different bytes:\n" + "\n".join(f"  - {p}" for p in problems), MISMATCH)
    if not args.quiet:
        print(summary(team, name, reply), file=sys.stderr)
    return 0


def summary(team: str, name: str, reply: dict[str, Any]) -> str:
    """``team/name vN (status, family; compile state: reason): url`` from the server's reply."""
    state = [printable(reply.get("status", ""), 40)]
    if reply.get("family"):
        state.append(printable(reply["family"], 60))
    line = f"{team}/{printable(name)} v{printable(reply.get('version'), 20)} ({', '.join(state)}"
    if reply.get("compile"):
        line += f"; compile {printable(reply['compile'], 20)}"
        if reply.get("compile_reason"):
            line += f": {printable(reply['compile_reason'])}"
    return f"{line}): {printable(reply.get('url', ''))}"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return push(args)
    except (CliError, OSError, http.client.HTTPException) as exc:
        print(f"push: {exc}", file=sys.stderr)
        return exc.code if isinstance(exc, CliError) else 1


if __name__ == "__main__":
    sys.exit(main())
