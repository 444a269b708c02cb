"""Read what a model folder says about itself, from blobs already in the
artifact store: never loads a pickle, never imports torch.

``intake_inspect(files)`` takes ``{file name: sha256}`` and returns a
``Proposal``: the family, labels, parameter count and dtypes (from the
safetensors headers), the tokenizer, the card and its front matter, and the
taxonomy nodes it proposes. It raises ``IntakeRefused`` (a ValidationError
with one message per problem) for anything the catalogue will not store.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from catalog.intake.card import card_metadata, card_split
from catalog.intake.names import PICKLE_SUFFIXES, SAFETENSORS_SUFFIX, SHARD_INDEX, is_pickle, name_problem
from catalog.storage import ArtifactError, artifact_exists, artifact_open, artifact_size

MAX_JSON_BYTES = 20 * 1024 * 1024
MAX_CARD_BYTES = 1024 * 1024
TOKENIZER_NAMES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "added_tokens.json",
)
LANGUAGE_NODES = {
    "en": "text/natural-language/english",
    "english": "text/natural-language/english",
    "de": "text/natural-language/german",
    "german": "text/natural-language/german",
    "fr": "text/natural-language/french",
    "french": "text/natural-language/french",
    "multilingual": "text/natural-language/multilingual",
}


class IntakeRefused(ValidationError):
    """The folder cannot be registered; ``messages`` says why, one per problem."""


@dataclass
class Proposal:
    """What was read from a folder, and what the catalogue proposes from it."""

    files: list[dict[str, Any]]
    family: str
    compilable: bool
    compile_reason: str = ""
    architectures: list[str] = field(default_factory=list)
    model_type: str = ""
    problem_type: str = ""
    labels: list[str] = field(default_factory=list)
    max_position_embeddings: int | None = None
    max_length: int | None = None
    hidden_size: int | None = None
    parameter_count: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)
    weights: list[str] = field(default_factory=list)
    weights_name: str = "model.safetensors"
    sharded: bool = False
    tokenizer: dict[str, Any] = field(default_factory=dict)
    card: str = ""
    card_metadata: dict[str, Any] = field(default_factory=dict)
    modality: str = ""
    result: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def intake(self) -> dict[str, Any]:
        """What a version keeps of the proposal (its ``intake`` field)."""
        data = self.as_dict()
        for key in ("files", "card"):
            data.pop(key)
        return data

    @property
    def total_size(self) -> int:
        return sum(int(f["size"]) for f in self.files)


def _size(sha256: str) -> int:
    return artifact_size(sha256)


def _read_json(name: str, sha256: str, size: int, problems: list[str]) -> dict[str, Any]:
    if size > MAX_JSON_BYTES:
        problems.append(f"{name} is {size} bytes; at most {MAX_JSON_BYTES} are read")
        return {}
    with artifact_open(sha256) as fh:
        raw = fh.read()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{name} is not valid JSON ({exc})")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{name} must hold a JSON object")
        return {}
    return data


def _check_names(files: dict[str, str]) -> list[str]:
    problems = []
    if not files:
        return ["no files: a model folder needs config.json and *.safetensors weights"]
    if len(files) > settings.MODEL_MAX_FILES:
        problems.append(f"{len(files)} files; at most {settings.MODEL_MAX_FILES} per version")
    for name, sha256 in files.items():
        problem = name_problem(name)
        if problem:
            problems.append(problem)
        try:
            if not artifact_exists(sha256):
                problems.append(f"{name}: no blob {sha256} in the artifact store (upload it first)")
        except ArtifactError:
            problems.append(f"{name}: {sha256!r} is not a sha256 digest")
    pickles = sorted(n for n in files if isinstance(n, str) and is_pickle(n))
    if pickles:
        problems.append(
            f"pickle weights are refused ({', '.join(pickles)}): loading a pickle can run arbitrary code. "
            f"Save the weights as safetensors (save_pretrained(..., safe_serialization=True)) "
            f"and leave out {', '.join('*' + s for s in PICKLE_SUFFIXES)}."
        )
    return problems


def _weights(files: dict[str, str], problems: list[str], p: Proposal) -> None:
    """Which safetensors files are the weights; the shard index must list them all."""
    from runners.safetensors_info import safetensors_header_read, tensor_summary

    shards = sorted(n for n in files if n.endswith(SAFETENSORS_SUFFIX))
    if not shards:
        problems.append("no *.safetensors weights: the catalogue stores safetensors only")
        return
    if SHARD_INDEX in files:
        index = _read_json(SHARD_INDEX, files[SHARD_INDEX], _size(files[SHARD_INDEX]), problems)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            problems.append(f"{SHARD_INDEX} has no weight_map")
            return
        listed = sorted({str(v) for v in weight_map.values()})
        missing = [n for n in listed if n not in files]
        if missing:
            problems.append(f"{SHARD_INDEX} lists shards that were not uploaded: {', '.join(missing)}")
        p.sharded, p.weights_name = True, SHARD_INDEX
        weights = [n for n in listed if n in files]
    else:
        weights = shards
        p.weights_name = "model.safetensors" if "model.safetensors" in files else shards[0]
    dtypes: dict[str, int] = {}
    total = 0
    for name in weights:
        try:
            with artifact_open(files[name]) as fh:
                count, by_dtype = tensor_summary(safetensors_header_read(fh))
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        total += count
        for dtype, n in by_dtype.items():
            dtypes[dtype] = dtypes.get(dtype, 0) + n
    p.weights, p.parameter_count, p.dtypes = weights, total, dtypes


def _config(config: dict[str, Any], p: Proposal) -> None:
    p.architectures = [str(a) for a in config.get("architectures") or []][:10]
    p.model_type = str(config.get("model_type") or "")
    p.problem_type = str(config.get("problem_type") or "")
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        try:
            p.labels = [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]
        except (TypeError, ValueError):
            p.labels = [str(v) for v in id2label.values()]
    elif isinstance(config.get("labels"), list):  # the catalogue's own families
        p.labels = [str(x) for x in config["labels"]]
    for key in ("max_position_embeddings", "hidden_size"):
        if isinstance(config.get(key), int):
            setattr(p, key, int(config[key]))


def _tokenizer(files: dict[str, str], problems: list[str], p: Proposal) -> None:
    present = [n for n in TOKENIZER_NAMES if n in files]
    info: dict[str, Any] = {"files": present}
    if "tokenizer_config.json" in files:
        cfg = _read_json(
            "tokenizer_config.json", files["tokenizer_config.json"], _size(files["tokenizer_config.json"]), problems
        )
        if cfg.get("tokenizer_class"):
            info["class"] = str(cfg["tokenizer_class"])
        limit = cfg.get("model_max_length")
        if isinstance(limit, int) and 0 < limit < 1_000_000:
            p.max_length = limit
    info["fast"] = "tokenizer.json" in files
    p.tokenizer = info
    if p.max_length is None and p.max_position_embeddings:
        p.max_length = p.max_position_embeddings
    if p.max_length and p.max_position_embeddings:
        p.max_length = min(p.max_length, p.max_position_embeddings)


def _card(files: dict[str, str], p: Proposal) -> None:
    sha = files.get("README.md")
    if not sha:
        return
    with artifact_open(sha) as fh:
        raw = fh.read(MAX_CARD_BYTES + 1)
    if len(raw) > MAX_CARD_BYTES:
        p.notes.append(f"README.md is larger than {MAX_CARD_BYTES} bytes; the card was cut")
    text = raw[:MAX_CARD_BYTES].decode("utf-8", errors="replace")
    meta, body = card_split(text)
    p.card, p.card_metadata = body, card_metadata(meta)


def _propose(p: Proposal) -> None:
    """Intake modality and result kind from the family and task."""
    arch = p.architectures[0] if p.architectures else ""
    text = bool(p.model_type) or p.family in ("text-classifier", "sentence-encoder", "sequence-classifier")
    if p.family == "mlp-classifier":
        p.modality = "tabular/numeric"
    elif text:
        languages = [str(x).lower() for x in p.card_metadata.get("language", [])]
        if len(languages) > 1:
            p.modality = "text/natural-language/multilingual"
        elif languages and languages[0] in LANGUAGE_NODES:
            p.modality = LANGUAGE_NODES[languages[0]]
        else:
            p.modality = "text/natural-language"
    if p.family in ("sequence-classifier", "text-classifier", "mlp-classifier"):
        if p.problem_type == "multi_label_classification":
            p.result = "classification/multilabel"
        elif p.problem_type == "regression" or (p.family == "sequence-classifier" and len(p.labels) == 1):
            p.result = "regression/scalar"
        elif len(p.labels) == 2:
            p.result = "classification/binary"
        else:
            p.result = "classification/multiclass"
    elif p.family == "sentence-encoder":
        p.result = "embedding/sentence"
    elif arch.endswith("ForTokenClassification"):
        p.result = "tagging"
    elif arch.endswith(("ForCausalLM", "ForConditionalGeneration", "ForMaskedLM")):
        p.result = "generation/text"


def intake_inspect(files: dict[str, str]) -> Proposal:
    """Inspect a folder whose files are already in the artifact store.

    Args:
        files: file name inside the folder → sha256 of its blob.

    Raises:
        IntakeRefused: unsafe names, pickle weights, no safetensors, a missing
            blob, malformed JSON or safetensors headers (every problem listed).
    """
    from runners.families import family_detect

    problems = _check_names(files)
    if problems:
        raise IntakeRefused(problems)
    entries = [{"name": n, "sha256": s, "size": _size(s)} for n, s in sorted(files.items())]
    p = Proposal(files=entries, family="", compilable=False)
    _weights(files, problems, p)
    config: dict[str, Any] = {}
    if "config.json" in files:
        config = _read_json("config.json", files["config.json"], _size(files["config.json"]), problems)
    else:
        p.notes.append("no config.json: the architecture and labels are unknown")
    _config(config, p)
    _tokenizer(files, problems, p)
    _card(files, p)
    if problems:
        raise IntakeRefused(problems)
    choice = family_detect(config, set(files))
    p.family, p.compilable, p.compile_reason = choice.family, choice.compilable, choice.reason
    if p.family == "text-classifier" and "classifier.json" in files:
        head = _read_json("classifier.json", files["classifier.json"], _size(files["classifier.json"]), problems)
        p.labels = [str(x) for x in head.get("labels", [])] or p.labels
    text_family = p.family in ("text-classifier", "sentence-encoder", "sequence-classifier")
    if text_family and "tokenizer.json" not in files:
        p.compilable = False
        p.compile_reason = "no tokenizer.json: the compiled bundles need a fast tokenizer"
    if p.family == "sequence-classifier" and not p.labels:
        p.notes.append("config.json has no id2label: the classes are unnamed")
    _propose(p)
    if problems:
        raise IntakeRefused(problems)
    return p
