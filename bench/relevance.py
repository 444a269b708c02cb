"""Relevance of search: recall@3 and MRR over ``bench/relevance_questions.json``,
keyword-only vs hybrid, side by side.

    .venv/bin/python bench/relevance.py [--synthetic 2000] [--synthetic-vectors encoded|template]
                                        [--database-url URL] [--json out.json]

Builds a throw-away catalogue (SQLite in a temporary folder unless
``--database-url`` names an empty PostgreSQL database): the four demo entries
with the texts ``seed_demo`` registers (their trained weights do not matter to
search, so none are trained here) plus ``--synthetic`` ``catalog_synth``
entries. Embeddings come from the int8 MiniLM encoder under ``var/`` (built
once if missing). Synthetic entries are encoded from their text like any
registered model (``encoded``, the default: what a catalogue of that many real
entries would hold), or get ``catalog_synth``'s cheap template vectors
(``template``: how a 100k benchmark catalogue is filled). "keyword-only" is the
same selector with the semantic side switched off.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEMO: list[dict[str, Any]] = [
    {
        "slug": "all-minilm-l6-v2",
        "name": "all-MiniLM-L6-v2",
        "summary": "Sentence embeddings (384-d) from a 6-layer MiniLM encoder, mean-pooled.",
        "description": "The sentence-transformers all-MiniLM-L6-v2 encoder, packaged for offline use. Maps English "
        "sentences and short paragraphs to a 384-dimensional normalised vector for semantic search, clustering and "
        "as a backbone for text classifiers.",
        "modality": "text/natural-language/english",
        "result": "embedding/sentence",
        "domain": "general/web-crawl",
        "labels": [],
    },
    {
        "slug": "digits-mlp",
        "name": "Handwritten digit classifier",
        "summary": "Recognises handwritten digits 0–9 in 8×8 grayscale scans.",
        "description": "A two-layer perceptron over the 64 pixel intensities of the UCI optical recognition of "
        "handwritten digits data set (scikit-learn's load_digits).",
        "modality": "image/handwriting",
        "result": "classification/multiclass",
        "domain": "education/handwritten-digits",
        "labels": [str(i) for i in range(10)],
    },
    {
        "slug": "breast-cancer-mlp",
        "name": "Breast mass malignancy classifier",
        "summary": "Benign vs malignant from 30 cell-nucleus measurements of a fine-needle aspirate.",
        "description": "A two-layer perceptron on the Wisconsin diagnostic breast cancer data set (scikit-learn's "
        "load_breast_cancer). Numeric tabular input, binary output.",
        "modality": "tabular/numeric",
        "result": "classification/binary",
        "domain": "science/medicine/oncology",
        "labels": ["malignant", "benign"],
    },
    {
        "slug": "support-ticket-router",
        "name": "Support ticket router",
        "summary": "Classifies text into account, billing, shipping, technical (fine-tuned from all-MiniLM-L6-v2 "
        "v1 on Support tickets (demo))",
        "description": "",  # seed_demo's card (catalog.services.demo.ROUTER_CARD), set in main()
        "modality": "text/natural-language/english",
        "result": "classification/multiclass",
        "domain": "business/support-tickets",
        "labels": ["account", "billing", "shipping", "technical"],
    },
]


def register_demo() -> None:
    from catalog.models import Domain, Modality, ResultKind
    from catalog.services.registry import model_version_create, model_version_finish, registered_model_create
    from catalog.services.teams import team_get_or_create

    team = team_get_or_create(name="Platform ML")
    for entry in DEMO:
        model = registered_model_create(
            slug=entry["slug"],
            name=entry["name"],
            summary=entry["summary"],
            description=entry["description"],
            team=team,
            modality=Modality.objects.get(path=entry["modality"]),
            result_kind=ResultKind.objects.get(path=entry["result"]),
            domain=Domain.objects.get(path=entry["domain"]),
        )
        version = model_version_create(
            registered_model=model,
            family="mlp-classifier",
            files=[{"name": "model.safetensors", "sha256": "0" * 64, "size": 1}],
            labels=entry["labels"],
        )
        model_version_finish(version=version)


def rank_of(question: dict[str, Any], rows: list[tuple[str, str]]) -> int | None:
    for i, (slug, name) in enumerate(rows, start=1):
        if ("slug" in question and slug == question["slug"]) or (
            "name_has" in question and question["name_has"] in name.lower().split()
        ):
            return i
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--synthetic", type=int, default=2000)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--synthetic-vectors", choices=("encoded", "template"), default="encoded")
    parser.add_argument("--depth", type=int, default=20, help="ranks looked at for MRR")
    parser.add_argument("--json", default="", help="write the per-question ranks and the summary here")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="relevance-")
    os.environ["MODELLIBRARY_VAR_DIR"] = tmp
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{tmp}/db.sqlite3"
    os.environ["DJANGO_SETTINGS_MODULE"] = "modellibrary.settings"
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import AnonymousUser
    from django.core.management import call_command

    settings.DISCOVERY_ENCODER_DIR = ROOT / "var" / "discovery" / "encoders"
    settings.DISCOVERY_EMBED_SYNC = True
    call_command("migrate", verbosity=0)
    from catalog.services.demo import ROUTER_CARD
    from catalog.services.synth import catalog_synth
    from catalog.services.taxonomy import taxonomy_load
    from discovery import selectors
    from discovery.services import embeddings_refresh, encoder_resolve

    DEMO[-1]["description"] = ROUTER_CARD
    taxonomy_load(path=ROOT / "fixtures" / "taxonomy.json")
    info = encoder_resolve(build=True)
    register_demo()
    embeddings_refresh()
    encoded = args.synthetic_vectors == "encoded"
    catalog_synth(count=args.synthetic, embed=not encoded)
    if encoded:
        embeddings_refresh()
    from django.db import connection

    from catalog.selectors.search import SearchParams, model_search

    questions = json.loads((ROOT / "bench" / "relevance_questions.json").read_text())["questions"]
    real_query_vector = selectors.query_vector

    def ranks(semantic: bool) -> list[int | None]:
        selectors.query_vector = real_query_vector if semantic else (lambda index, q: None)  # type: ignore[assignment]
        out = []
        for question in questions:
            result = model_search(user=AnonymousUser(), params=SearchParams(q=question["q"]))
            rows = [(m.slug, m.name) for m in result.rows(0, args.depth)]
            out.append(rank_of(question, rows))
        return out

    keyword, hybrid = ranks(False), ranks(True)
    print(
        f"catalogue: {len(DEMO)} demo + {args.synthetic:,} synthetic entries ({args.synthetic_vectors} vectors); "
        f"encoder {info.source if info else None}; database {connection.vendor}"
    )
    print(f"{'question':52s} {'keyword':>8s} {'hybrid':>8s}")
    for question, k, h in zip(questions, keyword, hybrid, strict=True):
        print(f"{question['q'][:52]:52s} {k or '-':>8} {h or '-':>8}")

    def summary(rs: list[int | None]) -> tuple[float, float]:
        recall = sum(1 for r in rs if r is not None and r <= 3) / len(rs)
        mrr = sum(1 / r for r in rs if r is not None) / len(rs)
        return recall, mrr

    subsets = {
        "all": range(len(questions)),
        "demo targets": [i for i, q in enumerate(questions) if "slug" in q],
        "synthetic targets": [i for i, q in enumerate(questions) if "name_has" in q],
    }
    print(f"\n{'questions':24s} {'keyword recall@3':>17s} {'MRR':>6s} {'hybrid recall@3':>16s} {'MRR':>6s}")
    report: dict[str, Any] = {
        "synthetic": args.synthetic,
        "synthetic_vectors": args.synthetic_vectors,
        "database": connection.vendor,
        "questions": [
            {"q": q["q"], "keyword": k, "hybrid": h} for q, k, h in zip(questions, keyword, hybrid, strict=True)
        ],
        "summary": {},
    }
    for label, idx in subsets.items():
        (kr, km), (hr, hm) = summary([keyword[i] for i in idx]), summary([hybrid[i] for i in idx])
        print(f"{label + f' ({len(idx)})':24s} {kr:17.3f} {km:6.3f} {hr:16.3f} {hm:6.3f}")
        report["summary"][label] = {
            "n": len(idx),
            "keyword": {"recall@3": kr, "mrr": km},
            "hybrid": {"recall@3": hr, "mrr": hm},
        }
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
