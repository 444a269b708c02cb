"""schemathesis against a live server: every operation of /api/v1/schema/, all
checks, authenticated (Token) and anonymous, 0 failures.

The server is pytest-django's live server (a thread of this process, on the
test database), seeded with a small catalogue: an internal model with two
served variants that have real bundle files, a private model of the same team,
another team's private model, a dataset and a fine-tune job. Nothing runs the
work the API queues: enqueueing is stubbed, so created jobs stay queued.

Deterministic: a fixed seed, derandomized generation, no example database.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from catalog.models import Variant, VariantStatus, Visibility
from catalog.storage import artifact_put
from tests.catalog.api.tokens import token_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(600)]

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "12"))


@pytest.fixture
def catalogue(
    make_model: Any, make_team: Any, make_user: Any, tiny_encoder: Any, tickets_csv: bytes, monkeypatch: Any
) -> dict[str, Any]:
    from catalog.services.datasets import dataset_upload
    from catalog.services.finetune import finetune_request

    # Queued work is never picked up (no worker; and with a Redis broker a stale
    # message must not outlive the test).
    monkeypatch.setattr("catalog.services.finetune.finetune_enqueue", lambda **kwargs: None)
    monkeypatch.setattr("catalog.services.compile.compile_enqueue", lambda **kwargs: None)
    team_a, team_b = make_team("Team A"), make_team("Team B")
    alice = make_user("alice", team_a)
    router = make_model("Router", team=team_a)
    make_model("Secret", team=team_a, visibility=Visibility.PRIVATE)
    make_model("Hidden", team=team_b, visibility=Visibility.PRIVATE)
    for name, precision, p95 in (("onnx-fp32", "fp32", 9.0), ("onnx-int8", "int8", 4.0)):
        blob = artifact_put(io.BytesIO(f"bundle {name} ".encode() * 2000))
        Variant.objects.create(
            version=router.latest_version,
            name=name,
            format="onnx",
            precision=precision,
            runtime="onnxruntime",
            status=VariantStatus.SERVED,
            sha256=blob.sha256,
            size=blob.size,
            latency_p50_ms=p95 / 1.2,
            latency_p95_ms=p95,
        )
    dataset, _ = dataset_upload(team=team_a, source=io.BytesIO(tickets_csv), file_name="tickets.csv", name="Tickets")
    job = finetune_request(
        team=team_a, base_version=tiny_encoder, dataset_version=dataset, name="Router FT", user=alice, enqueue=False
    )
    return {"token": token_for(alice), "job": job, "dataset": dataset}


def schemathesis_run(base: str, tmp_path: Path, *headers: str) -> subprocess.CompletedProcess[str]:
    report = tmp_path / "junit.xml"
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base}/api/v1/schema/",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "20261125",
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
        *[arg for h in headers for arg in ("--header", h)],
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=540, cwd=tmp_path, check=False)


@pytest.mark.parametrize("auth", ["token", "anonymous"])
def test_schemathesis_finds_no_failure(live_server: Any, catalogue: dict[str, Any], tmp_path: Path, auth: str) -> None:
    headers = [f"Authorization: Token {catalogue['token']}"] if auth == "token" else []
    result = schemathesis_run(live_server.url, tmp_path, *headers)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    assert "No issues found" in output or " passed" in output, output[-5000:]
