"""``sequence-classifier``: a Hugging Face ``*ForSequenceClassification``
checkpoint (BERT, DistilBERT, RoBERTa, MPNet, …) used as registered: its own
head and pooling, class names from ``config.json``'s ``id2label`` in index
order. Probabilities are a softmax over the logits (a sigmoid per class for
``multi_label_classification``). Fine-tuning one trains a new head on its
encoder (``text_classifier.fit`` loads the encoder with ``AutoModel``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def load(model_dir: Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """The model (eval mode) from a local directory only, and what the export needs.

    Returns:
        ``(model, info)`` where ``info`` holds ``labels`` (index order),
        ``problem_type``, ``max_length``, ``hidden_size`` and ``num_heads``.
    """
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), local_files_only=True)
    model.eval().to(device)
    config = model.config
    labels = [str(config.id2label[i]) for i in range(config.num_labels)]
    heads = getattr(config, "num_attention_heads", None) or getattr(config, "n_heads", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "dim", None)
    return model, {
        "labels": labels,
        "problem_type": config.problem_type or "",
        "max_length": min(int(getattr(config, "max_position_embeddings", 512) or 512), 512),
        "hidden_size": int(hidden or 0),
        "num_heads": int(heads or 0),
    }


def probabilities(logits: Any, problem_type: str) -> Any:
    import torch

    if problem_type == "multi_label_classification":
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=-1)


def predict(model_dir: Path, texts: list[str], batch_size: int = 32, max_length: int = 128) -> np.ndarray:
    """Class probabilities, shape (len(texts), len(labels)), labels in index order."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model, info = load(model_dir)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                texts[start : start + batch_size],
                padding=True,
                truncation=True,
                max_length=min(max_length, info["max_length"]),
                return_tensors="pt",
            )
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            out.append(probabilities(logits, info["problem_type"]).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(info["labels"])), dtype=np.float32)
