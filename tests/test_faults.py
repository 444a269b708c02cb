"""What a SIGKILL leaves behind is cleaned up, and the fault script's quickest
scenario (a web worker killed mid-upload) passes. The full fault runs are
``bench/faults.py`` (docs/BENCHMARKS.md, "Fault runs")."""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from catalog.storage import artifact_put, artifact_tmp_sweep, artifact_tmpdir

ROOT = Path(__file__).resolve().parent.parent


def _age(path: Path, seconds: float = 10) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def _hold_tmpdir(conn: Any) -> None:
    with artifact_tmpdir() as tmp:
        (tmp / "model.onnx").write_bytes(b"half an export")
        conn.send(str(tmp))
        time.sleep(120)


class _Blocking(io.RawIOBase):
    """A source that yields some bytes, then blocks (a client gone quiet)."""

    def __init__(self, conn: Any) -> None:
        self.conn, self.sent = conn, False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self.sent:
            self.sent = True
            return b"x" * 1000
        self.conn.send("writing")
        time.sleep(120)
        return b""


def _hold_put(conn: Any) -> None:
    artifact_put(_Blocking(conn))  # type: ignore[arg-type]


def _spawn(target: Any) -> tuple[multiprocessing.process.BaseProcess, Any]:
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child,), daemon=True)
    proc.start()
    assert parent.poll(30), "the child never started"
    return proc, parent.recv()


def _kill(proc: multiprocessing.process.BaseProcess) -> None:
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)


def test_the_sweep_removes_a_killed_workers_scratch_folder_and_keeps_a_live_one(settings: Any) -> None:
    live_proc, live = _spawn(_hold_tmpdir)
    dead_proc, dead = _spawn(_hold_tmpdir)
    try:
        _kill(dead_proc)
        for path in (Path(live), Path(dead)):
            _age(path)
        removed = artifact_tmp_sweep()
        assert removed == [Path(dead).name]
        assert not Path(dead).exists()
        assert (Path(live) / "model.onnx").read_bytes() == b"half an export"
    finally:
        _kill(live_proc)
    _age(Path(live))
    assert artifact_tmp_sweep() == [Path(live).name]
    assert list(Path(settings.ARTIFACT_TMP_DIR).iterdir()) == []


def test_the_sweep_removes_a_partial_upload_only_once_its_writer_died(settings: Any) -> None:
    proc, _ = _spawn(_hold_put)
    tmp = Path(settings.ARTIFACT_TMP_DIR)
    try:
        [partial] = list(tmp.iterdir())
        assert partial.name.startswith("put-")
        _age(partial)
        assert artifact_tmp_sweep() == []  # still being written
        assert partial.exists()
    finally:
        _kill(proc)
    assert artifact_tmp_sweep() == [partial.name]
    assert list(tmp.iterdir()) == []


def test_an_unlocked_folder_is_kept_until_its_grace_period_ends(settings: Any) -> None:
    old = Path(settings.ARTIFACT_TMP_DIR) / "tmpold"
    old.mkdir()
    _age(old, 100)
    assert artifact_tmp_sweep(grace_s=3600) == []
    assert artifact_tmp_sweep(grace_s=60) == ["tmpold"]


def test_an_upload_being_received_is_locked_and_spared_by_the_sweep(settings: Any) -> None:
    from catalog.uploads import LockedTemporaryFileUploadHandler

    settings.FILE_UPLOAD_TEMP_DIR = str(settings.ARTIFACT_TMP_DIR)
    handler = LockedTemporaryFileUploadHandler()
    handler.new_file("file", "big.csv", "text/csv", 10_000_000)
    handler.receive_data_chunk(b"text,label\n" * 1000, 0)
    [partial] = list(Path(settings.ARTIFACT_TMP_DIR).iterdir())
    assert ".upload" in partial.name
    _age(partial)
    assert artifact_tmp_sweep() == []
    uploaded = handler.file_complete(11_000)
    assert uploaded is not None
    assert uploaded.read(11) == b"text,label\n"
    uploaded.close()  # Django deletes it at the end of the request
    assert list(Path(settings.ARTIFACT_TMP_DIR).iterdir()) == []


@pytest.mark.worker
def test_a_web_worker_killed_mid_upload_leaves_nothing_partial() -> None:
    """bench/faults.py's upload scenario, end to end: gunicorn, SIGKILL, store check."""
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "faults.py"), "--only", "upload", "--upload-mb", "6"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "| web: kill -9 mid-upload (dataset) | 1 |" in result.stdout
    assert "| store after all runs | 0 | - | 0/0 | 0 | 0 | 0 |" in result.stdout
