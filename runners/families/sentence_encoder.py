"""``sentence-encoder``: a transformer encoder with attention-masked mean pooling
(the all-MiniLM-L6-v2 recipe), L2-normalised."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# A fast tokenizer's files (those present are copied), and everything a
# Hugging Face encoder directory needs at inference time.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
ENCODER_FILES = ("config.json", "model.safetensors", *TOKENIZER_FILES)


def load(model_dir: Path, device: str | None = None) -> tuple[Any, Any]:
    """The tokenizer and the encoder (eval mode) from a local directory only."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    model.eval()
    if device:
        model.to(device)
    return tokenizer, model


def mean_pool(last_hidden: Any, attention_mask: Any) -> Any:
    mask = attention_mask.unsqueeze(-1).to(last_hidden.dtype)
    return (last_hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def pooled_batches(
    tokenizer: Any, encoder: Any, texts: list[str], batch_size: int = 64, max_length: int = 256
) -> Iterator[Any]:
    """Mean-pooled encoder states (not normalised), one tensor per batch of ``texts``."""
    import torch

    device = next(encoder.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            yield mean_pool(encoder(**batch).last_hidden_state, batch["attention_mask"])


def predict(model_dir: Path, texts: list[str], batch_size: int = 64, max_length: int = 256) -> np.ndarray:
    """Sentence embeddings, shape (len(texts), hidden), unit length."""
    import torch

    tokenizer, model = load(model_dir)
    out = [
        torch.nn.functional.normalize(pooled, dim=1).cpu().numpy()
        for pooled in pooled_batches(tokenizer, model, texts, batch_size, max_length)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), dtype=np.float32)
