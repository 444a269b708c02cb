"""Tiny randomly initialised Hugging Face folders for the registration tests:
BERT / DistilBERT / RoBERTa sequence classifiers and encoders, saved as
safetensors with MiniLM's packaged tokenizer files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
LABELS = ["billing", "outage", "praise"]


def _tokenizer(dest: Path) -> None:
    from runners.testing import minilm_dir

    for name in TOKENIZER:
        shutil.copyfile(minilm_dir() / name, dest / name)


def make_hf_folder(
    dest: Path,
    *,
    kind: str = "bert",
    task: str = "classifier",
    labels: list[str] | None = None,
    readme: str | None = None,
    max_shard_size: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a tiny random model of ``kind`` (bert | distilbert | roberta); ``task``
    "classifier" (``*ForSequenceClassification`` with ``labels``) or "encoder"."""
    import torch
    from transformers import (
        AutoModel,
        AutoModelForSequenceClassification,
        BertConfig,
        DistilBertConfig,
        RobertaConfig,
    )

    torch.manual_seed(seed)
    labels = LABELS if labels is None else labels
    common: dict[str, Any] = {"vocab_size": 30522}
    config: Any
    if kind == "bert":
        config = BertConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=128, **common,
        )  # fmt: skip
    elif kind == "distilbert":
        config = DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128, **common)
    elif kind == "roberta":
        config = RobertaConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=130, pad_token_id=0, bos_token_id=101, eos_token_id=102, **common,
        )  # fmt: skip
    else:
        raise ValueError(kind)
    if task == "classifier":
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModel.from_config(config)
    dest.mkdir(parents=True, exist_ok=True)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(str(dest), safe_serialization=True, **kwargs)
    _tokenizer(dest)
    if readme is not None:
        (dest / "README.md").write_text(readme)
    return dest


def put_folder(folder: Path) -> dict[str, str]:
    """Put every file of ``folder`` in the artifact store: {name: sha256}."""
    from catalog.storage import artifact_put_path

    return {p.name: artifact_put_path(p).sha256 for p in sorted(folder.iterdir()) if p.is_file()}
