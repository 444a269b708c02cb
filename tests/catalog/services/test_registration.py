"""Registration service: roles, intake of Hugging Face folders, refusals,
lifecycle, promotion and the audit log."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from catalog.models import (
    Alias,
    AuditAction,
    AuditEvent,
    Lifecycle,
    ModelVersion,
    Variant,
    VariantStatus,
    VersionStatus,
)
from catalog.roles import Role, has_role, user_role
from catalog.services.registration import (
    IntakeRefused,
    alias_remove,
    alias_set_checked,
    intake_inspect,
    lifecycle_set,
    model_card_update,
    model_register,
    version_register,
)
from catalog.services.teams import membership_set, team_member_set
from catalog.storage import artifact_exists, artifact_put
from tests.registration_folders import LABELS, make_hf_folder, put_folder

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    readme = "---\nlicense: apache-2.0\ntags: [support, tickets]\nlanguage: en\ndatasets: [acme/tickets]\n---\n# Ticket router\n"
    return make_hf_folder(tmp_path_factory.mktemp("bert"), kind="bert", readme=readme)


@pytest.fixture
def people(taxonomy: None, make_team: Callable[..., Any], make_user: Callable[..., Any]) -> dict[str, Any]:
    team = make_team("Team A")
    out: dict[str, Any] = {"team": team}
    for role in Role:
        user = make_user(role.value)
        membership_set(team=team, user=user, role=role)
        out[role.value] = user
    out["outsider"] = make_user("outsider", make_team("Team B"))
    return out


def test_roles_rank_and_default_member(people: dict[str, Any], make_user: Callable[..., Any]) -> None:
    team = people["team"]
    added = make_user("plain")
    team.members.add(added)  # the old way still works: role member
    assert user_role(added, team) == Role.MEMBER
    assert has_role(people["maintainer"], team, Role.MEMBER)
    assert not has_role(people["viewer"], team, Role.MEMBER)
    assert not has_role(people["outsider"], team, Role.VIEWER)
    root = make_user("root")
    root.is_superuser = True
    root.save()
    assert has_role(root, team, Role.MAINTAINER)


@pytest.mark.parametrize(
    ("who", "allowed"), [("viewer", False), ("member", True), ("maintainer", True), ("outsider", False)]
)
def test_model_register_needs_member(people: dict[str, Any], who: str, allowed: bool) -> None:
    call = lambda: model_register(user=people[who], team=people["team"], name="Ticket router", visibility="private")  # noqa: E731
    if allowed:
        model = call()
        assert model.slug == "ticket-router"
        assert model.team == people["team"]
        assert AuditEvent.objects.filter(action=AuditAction.MODEL_REGISTERED, registered_model=model).exists()
    else:
        with pytest.raises(PermissionDenied):
            call()


def test_model_register_refuses_duplicates_and_bad_paths(people: dict[str, Any]) -> None:
    model_register(user=people["member"], team=people["team"], name="Router", visibility="internal")
    with pytest.raises(ValidationError) as exc:
        model_register(user=people["member"], team=people["team"], name="router", visibility="internal")
    assert exc.value.error_dict["name"][0].code == "exists"
    with pytest.raises(ValidationError) as exc:
        model_register(
            user=people["member"], team=people["team"], name="Other", visibility="internal", modality="no/such"
        )
    assert "modality" in exc.value.error_dict


def test_bert_classifier_folder_is_read_registered_and_searchable(
    people: dict[str, Any], bert_folder: Path, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.COMPILE_ON_READY = True
    files = put_folder(bert_folder)
    proposal = intake_inspect(files)
    assert proposal.family == "sequence-classifier"
    assert proposal.compilable
    assert proposal.architectures == ["BertForSequenceClassification"]
    assert proposal.model_type == "bert"
    assert proposal.labels == LABELS
    assert proposal.modality == "text/natural-language/english"
    assert proposal.result == "classification/multiclass"
    assert proposal.parameter_count > 0
    assert set(proposal.dtypes) == {"F32"}
    assert proposal.tokenizer["fast"] is True
    assert proposal.max_length == 128
    assert proposal.card_metadata["license"] == "apache-2.0"

    model = model_register(user=people["member"], team=people["team"], name="Ticket router", visibility="internal")
    queued: list[Any] = []
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        version = version_register(user=people["member"], registered_model=model, files=files, message="first")
        queued = callbacks
    assert [cb for cb in queued if cb.__qualname__.startswith("compile_request.")]  # the compile is queued
    model.refresh_from_db()
    assert version.status == VersionStatus.READY
    assert version.version == 1
    assert version.family == "sequence-classifier"
    assert version.labels == LABELS
    assert version.parameter_count == proposal.parameter_count
    assert {f["name"] for f in version.files} == set(files)
    # Trees the caller left open come from the proposal; the card's front matter became facets.
    assert model.modality.path == "text/natural-language/english"
    assert model.result_kind.path == "classification/multiclass"
    assert model.license == "apache-2.0"
    assert model.tags == ["support", "tickets"]
    assert "# Ticket router" in model.card
    assert "BertForSequenceClassification" in model.search_document
    assert model.latest_version_id == version.pk
    event = AuditEvent.objects.get(action=AuditAction.VERSION_REGISTERED)
    assert event.actor == people["member"]
    assert event.version == version


def test_viewer_cannot_register_a_version(people: dict[str, Any], bert_folder: Path) -> None:
    model = model_register(user=people["member"], team=people["team"], name="M", visibility="internal")
    with pytest.raises(PermissionDenied):
        version_register(user=people["viewer"], registered_model=model, files=put_folder(bert_folder))
    assert not ModelVersion.objects.exists()


def test_pickle_folder_is_refused_and_nothing_stored(people: dict[str, Any], artifact_store: Path) -> None:
    model = model_register(user=people["member"], team=people["team"], name="M", visibility="internal")
    files = {
        "config.json": artifact_put(io.BytesIO(b'{"model_type": "bert"}')).sha256,
        "pytorch_model.bin": artifact_put(io.BytesIO(b"\x80\x04 not really a pickle")).sha256,
    }
    with pytest.raises(IntakeRefused) as exc:
        version_register(user=people["member"], registered_model=model, files=files)
    assert "pickle" in " ".join(exc.value.messages)
    assert not ModelVersion.objects.exists()
    assert not any(artifact_exists(s) for s in files.values())
    assert not [p for p in artifact_store.rglob("*") if p.is_file()]


def test_refusal_keeps_blobs_other_versions_use(people: dict[str, Any], bert_folder: Path) -> None:
    model = model_register(user=people["member"], team=people["team"], name="M", visibility="internal")
    files = put_folder(bert_folder)
    version_register(user=people["member"], registered_model=model, files=files)
    bad = {"config.json": files["config.json"], "model.pt": artifact_put(io.BytesIO(b"pickle")).sha256}
    with pytest.raises(IntakeRefused):
        version_register(user=people["member"], registered_model=model, files=bad)
    assert artifact_exists(files["config.json"])
    assert not artifact_exists(bad["model.pt"])


@pytest.mark.parametrize(
    "name", ["../config.json", "/etc/passwd", "sub/config.json", "a\\b", "bad\x00name", ".hidden", ".."]
)
def test_traversal_and_unsafe_names_refused(people: dict[str, Any], bert_folder: Path, name: str) -> None:
    model = model_register(user=people["member"], team=people["team"], name="M", visibility="internal")
    files = put_folder(bert_folder)
    files[name] = files.pop("config.json")
    with pytest.raises(IntakeRefused):
        version_register(user=people["member"], registered_model=model, files=files)
    assert not ModelVersion.objects.exists()


def test_no_safetensors_and_missing_blob_refused(people: dict[str, Any]) -> None:
    config = artifact_put(io.BytesIO(b'{"model_type": "bert"}')).sha256
    with pytest.raises(IntakeRefused, match="safetensors"):
        intake_inspect({"config.json": config})
    with pytest.raises(IntakeRefused, match="upload it first"):
        intake_inspect({"config.json": config, "model.safetensors": "0" * 64})
    fake = artifact_put(io.BytesIO(b"\xff" * 16)).sha256
    with pytest.raises(IntakeRefused, match="not a safetensors file"):
        intake_inspect({"config.json": config, "model.safetensors": fake})


def test_sharded_checkpoint(people: dict[str, Any], tmp_path: Path) -> None:
    folder = make_hf_folder(tmp_path / "sharded", kind="bert", max_shard_size="500KB")
    shards = sorted(p.name for p in folder.glob("*.safetensors"))
    assert len(shards) > 1
    assert (folder / "model.safetensors.index.json").exists()
    files = put_folder(folder)
    proposal = intake_inspect(files)
    assert proposal.sharded
    assert proposal.weights == shards
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(folder))
    assert proposal.parameter_count == sum(
        int(p.numel()) for p in model.state_dict().values() if p.dtype == torch.float32
    )
    missing = dict(files)
    missing.pop(shards[-1])
    with pytest.raises(IntakeRefused, match="not uploaded"):
        intake_inspect(missing)


@pytest.mark.parametrize("kind", ["distilbert", "roberta"])
def test_other_encoders_are_read(kind: str, tmp_path: Path, people: dict[str, Any]) -> None:
    files = put_folder(make_hf_folder(tmp_path / kind, kind=kind, labels=["neg", "pos"]))
    proposal = intake_inspect(files)
    assert proposal.family == "sequence-classifier"
    assert proposal.compilable
    assert proposal.labels == ["neg", "pos"]
    assert proposal.result == "classification/binary"
    encoder = intake_inspect(put_folder(make_hf_folder(tmp_path / f"{kind}-enc", kind=kind, task="encoder")))
    assert encoder.family == "sentence-encoder"
    assert encoder.result == "embedding/sentence"


def test_unknown_architecture_is_catalogued_with_compile_skipped(people: dict[str, Any], bert_folder: Path) -> None:
    files = put_folder(bert_folder)
    files["config.json"] = artifact_put(
        io.BytesIO(b'{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}')
    ).sha256
    model = model_register(user=people["member"], team=people["team"], name="Writer", visibility="internal")
    version = version_register(user=people["member"], registered_model=model, files=files)
    assert version.family == "transformers"
    assert version.status == VersionStatus.READY
    variants = list(Variant.objects.filter(version=version))
    assert variants
    assert all(v.status == VariantStatus.SKIPPED for v in variants)
    assert "GPT2LMHeadModel" in variants[0].status_reason


def test_promotion_matrix_and_lifecycle(people: dict[str, Any], bert_folder: Path) -> None:
    model = model_register(user=people["member"], team=people["team"], name="M", visibility="internal")
    v1 = version_register(user=people["member"], registered_model=model, files=put_folder(bert_folder))
    for who in ("viewer", "member", "outsider"):
        with pytest.raises(PermissionDenied):
            alias_set_checked(user=people[who], registered_model=model, name="production", version=v1)
    alias_set_checked(user=people["maintainer"], registered_model=model, name="production", version=v1)
    assert Alias.objects.get(registered_model=model, name="production").version == v1
    with pytest.raises(ValidationError, match="alias must be one of"):
        alias_set_checked(user=people["maintainer"], registered_model=model, name="latest", version=v1)
    ModelVersion.objects.filter(pk=v1.pk).update(status=VersionStatus.BELOW_GATE)
    v1.refresh_from_db()
    with pytest.raises(ValidationError, match="below the quality gate"):
        alias_set_checked(user=people["maintainer"], registered_model=model, name="staging", version=v1)
    with pytest.raises(PermissionDenied):
        alias_remove(user=people["member"], registered_model=model, name="production")
    alias_remove(user=people["maintainer"], registered_model=model, name="production")
    assert not Alias.objects.filter(registered_model=model).exists()

    with pytest.raises(PermissionDenied):
        lifecycle_set(user=people["member"], registered_model=model, state=Lifecycle.DEPRECATED)
    lifecycle_set(user=people["maintainer"], registered_model=model, state=Lifecycle.DEPRECATED, reason="use v2")
    model.refresh_from_db()
    assert model.lifecycle == Lifecycle.DEPRECATED
    assert model.lifecycle_reason == "use v2"
    lifecycle_set(user=people["maintainer"], registered_model=model, state=Lifecycle.ARCHIVED)
    with pytest.raises(ValidationError, match="archived"):
        version_register(user=people["member"], registered_model=model, files=put_folder(bert_folder))
    actions = list(AuditEvent.objects.filter(registered_model=model).values_list("action", flat=True))
    assert actions.count(AuditAction.LIFECYCLE_CHANGED) == 2
    assert AuditAction.ALIAS_SET in actions
    assert AuditAction.ALIAS_REMOVED in actions


def test_card_edit_is_maintainer_only_and_reads_front_matter(people: dict[str, Any]) -> None:
    model = model_register(user=people["member"], team=people["team"], name="M", visibility="internal")
    card = "---\nlicense: mit\ntags: [nlp]\n---\n# Hello\n<script>alert(1)</script>\n"
    with pytest.raises(PermissionDenied):
        model_card_update(user=people["member"], registered_model=model, card=card)
    model_card_update(user=people["maintainer"], registered_model=model, card=card)
    model.refresh_from_db()
    assert model.license == "mit"
    assert model.tags == ["nlp"]
    assert model.card.startswith("# Hello")
    from catalog.intake.card import card_render

    html = card_render(model.card)
    assert "<h1>Hello</h1>" in html
    assert "<script>" not in html


def test_team_members_managed_by_maintainers(people: dict[str, Any], make_user: Callable[..., Any]) -> None:
    team = people["team"]
    make_user("newcomer")
    with pytest.raises(PermissionDenied):
        team_member_set(actor=people["member"], team=team, username="newcomer", role="member")
    team_member_set(actor=people["maintainer"], team=team, username="newcomer", role="viewer")
    assert user_role(people["maintainer"], team) == Role.MAINTAINER
    assert user_role(team.members.get(username="newcomer"), team) == Role.VIEWER
    with pytest.raises(ValidationError, match="last maintainer"):
        team_member_set(actor=people["maintainer"], team=team, username="maintainer", role="member")


def test_registered_model_compiles_and_resolves_like_a_fine_tuned_one(
    people: dict[str, Any], bert_folder: Path
) -> None:
    from rest_framework.test import APIClient

    from catalog.services.compile import version_compile

    model = model_register(user=people["member"], team=people["team"], name="Compiled", visibility="internal")
    version = version_register(user=people["member"], registered_model=model, files=put_folder(bert_folder))
    variants = {v.name: v for v in version_compile(version_id=version.pk)}
    assert variants["onnx-fp32"].status == VariantStatus.SERVED
    assert variants["onnx-fp32"].parity["max_abs_diff"] <= 1e-3
    client = APIClient()
    body = client.get("/api/v1/models/compiled/resolve", {"precision": "fp32", "hardware": "cpu"}).json()
    assert body["version"] == 1
    assert body["precision"] == "fp32"
    bundle = client.get(body["download_url"])
    assert bundle.status_code == 200
    # Deprecated: gone from search, still resolvable by exact version.
    lifecycle_set(user=people["maintainer"], registered_model=model, state=Lifecycle.DEPRECATED)
    assert client.get("/api/v1/models/", {"q": "compiled"}).json()["count"] == 0
    pinned = client.get("/api/v1/models/compiled/resolve", {"version": "1", "precision": "fp32"})
    assert pinned.status_code == 200


def test_fine_tune_needs_the_member_role(people: dict[str, Any], tiny_encoder: Any, tickets_csv: bytes) -> None:
    from catalog.services.datasets import dataset_upload
    from catalog.services.finetune import finetune_request

    dataset, _ = dataset_upload(team=people["team"], source=io.BytesIO(tickets_csv), file_name="t.csv")
    with pytest.raises(ValidationError) as exc:
        finetune_request(
            team=people["team"], base_version=tiny_encoder, dataset_version=dataset, name="R", user=people["viewer"]
        )
    assert "member role" in exc.value.message_dict["team"][0]
    job = finetune_request(
        team=people["team"],
        base_version=tiny_encoder,
        dataset_version=dataset,
        name="R",
        user=people["member"],
        enqueue=False,
    )
    assert job.pk
