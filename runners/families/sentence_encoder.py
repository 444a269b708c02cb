"""``sentence-encoder``: a transformer encoder with attention-masked mean pooling
(the all-MiniLM-L6-v2 recipe), L2-normalised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# Files a Hugging Face encoder directory needs at inference time.
ENCODER_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


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


def predict(model_dir: Path, texts: list[str], batch_size: int = 64, max_length: int = 256) -> np.ndarray:
    """Sentence embeddings, shape (len(texts), hidden), unit length."""
    import torch

    tokenizer, model = load(model_dir)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            hidden = model(**batch).last_hidden_state
            pooled = mean_pool(hidden, batch["attention_mask"])
            out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), dtype=np.float32)
