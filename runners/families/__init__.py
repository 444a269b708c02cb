"""Model families: the code behind a model's fit(), predict() and export.

* ``mlp-classifier`` — a small torch MLP over numeric features (tabular data,
  flattened small images).
* ``sentence-encoder`` — a transformer encoder with mean pooling (MiniLM, and
  any encoder ``AutoModel`` loads: BERT, DistilBERT, RoBERTa, MPNet, …).
* ``text-classifier`` — a transformer encoder plus a classification head
  trained here (``head.safetensors`` + ``classifier.json``).
* ``sequence-classifier`` — a Hugging Face ``*ForSequenceClassification``
  checkpoint as registered (its own head, labels from ``id2label``).
* ``transformers`` — any other Hugging Face architecture: catalogued and
  downloadable, not compiled or fine-tuned here.

``family_detect`` picks the family of a folder from what it holds (pure
Python: no torch, no transformers import).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FAMILIES = ("mlp-classifier", "sentence-encoder", "text-classifier", "sequence-classifier", "transformers")

# Encoders whose AutoModel / AutoModelForSequenceClassification forward takes
# (input_ids, attention_mask) and returns last_hidden_state / logits: the
# families below export them to ONNX and fine-tune a new head on them.
ENCODER_MODEL_TYPES = (
    "bert",
    "distilbert",
    "roberta",
    "xlm-roberta",
    "camembert",
    "mpnet",
    "electra",
)
_ENCODER_SUFFIXES = ("Model", "ForMaskedLM", "ForPreTraining")


@dataclass(frozen=True)
class FamilyChoice:
    family: str
    compilable: bool
    reason: str = ""  # why it does not compile, when it does not


def family_detect(config: dict[str, Any], names: set[str]) -> FamilyChoice:
    """The family of a folder from its ``config.json`` and its file names.

    Args:
        config: the parsed ``config.json`` (empty when there is none).
        names: the folder's file names.
    """
    if config.get("family") == "mlp-classifier":
        return FamilyChoice("mlp-classifier", True)
    model_type = str(config.get("model_type") or "")
    architectures = [str(a) for a in config.get("architectures") or []]
    arch = architectures[0] if architectures else ""
    encoder = model_type in ENCODER_MODEL_TYPES
    if encoder and {"head.safetensors", "classifier.json"} <= names:
        return FamilyChoice("text-classifier", True)
    if encoder and arch.endswith("ForSequenceClassification"):
        return FamilyChoice("sequence-classifier", True)
    if encoder and (not arch or arch.endswith(_ENCODER_SUFFIXES)):
        return FamilyChoice("sentence-encoder", True)
    what = arch or model_type or "this folder"
    if not config:
        reason = "no config.json: the architecture is unknown, so there is no ONNX export for it"
    elif encoder:
        reason = f"{what} has a task head the compiler does not export (sequence classification and encoders only)"
    else:
        reason = (
            f"{what} (model_type {model_type or '?'}) is not an encoder the compiler exports "
            f"({', '.join(ENCODER_MODEL_TYPES)})"
        )
    return FamilyChoice("transformers", False, reason)
