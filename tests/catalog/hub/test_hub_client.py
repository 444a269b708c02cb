"""The real ``huggingface_hub`` and ``transformers`` clients against a live
server: create_repo, upload_folder (LFS), snapshot_download, hf_hub_download,
from_pretrained, the Xet refusal, private repos and pickle refusal."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open

from catalog.models import ModelVersion, RegisteredModel, VersionStatus, Visibility
from catalog.storage import artifact_exists
from tests.catalog.hub.conftest import ClientRun, Member, folder_files

pytestmark = pytest.mark.django_db(transaction=True)

REPO = "team-a/tiny-bert"


def _upload(hf: Callable[..., ClientRun], member: Member, folder: Path, repo: str = REPO) -> ClientRun:
    return hf(
        f"""
        from huggingface_hub import HfApi
        info = HfApi().upload_folder(repo_id={repo!r}, folder_path={str(folder)!r}, commit_message="tiny bert")
        done(oid=info.oid, url=info.commit_url)
        """,
        token=member.token,
    )


def test_create_repo_answers_409_for_an_existing_repo_and_exist_ok_passes(
    hf: Callable[..., ClientRun], make_member: Callable[..., Member]
) -> None:
    alice = make_member("alice")
    run = hf(
        f"""
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError
        api = HfApi()
        first = api.create_repo({REPO!r}, private=True)
        try:
            api.create_repo({REPO!r})
            again = None
        except HfHubHTTPError as exc:
            again = exc.response.status_code
        ok = api.create_repo({REPO!r}, exist_ok=True)
        done(first=first.repo_id, again=again, ok=ok.repo_id, url=str(first))
        """,
        token=alice.token,
    )
    assert run.returncode == 0, run.output
    assert run.result["first"] == REPO
    assert run.result["again"] == 409
    assert run.result["ok"] == REPO
    model = RegisteredModel.objects.get(slug="tiny-bert")
    assert model.team.slug == "team-a"
    assert model.visibility == Visibility.PRIVATE  # the client sent visibility="private"
    assert model.versions.count() == 0


def test_upload_folder_then_download_every_revision_byte_identical(
    hf: Callable[..., ClientRun], make_member: Callable[..., Member], bert_folder: Path, tmp_path: Path, settings: Any
) -> None:
    from catalog.services.registry import alias_set

    settings.HUB_TREE_PAGE_SIZE = 2  # the client must follow the Link pages
    alice = make_member("alice")
    folder = shutil.copytree(bert_folder, tmp_path / "v1")
    expected = folder_files(folder)
    # As in a folder cloned from the Hub: ignored (shouldIgnore), not refused.
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    run = hf(
        f"""
        from huggingface_hub import HfApi
        api = HfApi()
        api.create_repo({REPO!r})
        info = api.upload_folder(repo_id={REPO!r}, folder_path={str(folder)!r}, commit_message="first")
        done(oid=info.oid, sha=api.model_info({REPO!r}).sha)
        """,
        token=alice.token,
    )
    assert run.returncode == 0, run.output
    model = RegisteredModel.objects.get(slug="tiny-bert")
    v1 = model.versions.get()
    assert v1.version == 1
    assert v1.status == VersionStatus.READY
    assert {f["name"]: f["sha256"] for f in v1.files} == {
        name: hashlib.sha256(data).hexdigest() for name, data in expected.items()
    }
    assert run.result["oid"] == run.result["sha"]  # the commit id is the head of main
    alias_set(registered_model=model, name="production", version=v1)

    # A second commit adds a card: a new version; v1 and production stay.
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "README.md").write_text("# Tiny BERT\n\nA test model.\n")
    second = _upload(hf, alice, tmp_path / "v2")
    assert second.returncode == 0, second.output
    v2 = model.versions.get(version=2)
    assert sorted(f["name"] for f in v2.files) == sorted([*expected, "README.md"])
    assert second.result["oid"] != run.result["oid"]

    download = hf(
        f"""
        from huggingface_hub import hf_hub_download, snapshot_download
        main = snapshot_download({REPO!r}, cache_dir="cache")
        v1 = snapshot_download({REPO!r}, revision="v1", cache_dir="cache")
        by_sha = snapshot_download({REPO!r}, revision={run.result["oid"]!r}, cache_dir="cache-sha")
        files = {{rev: hf_hub_download({REPO!r}, "README.md" if rev == "main" else "config.json",
                                       revision=rev, cache_dir="single")
                 for rev in ("v1", "main", "production")}}
        from transformers import AutoModel, AutoTokenizer
        encoder = AutoModel.from_pretrained({REPO!r}, cache_dir="tf")
        ids = AutoTokenizer.from_pretrained({REPO!r}, cache_dir="tf")("hello world")["input_ids"]
        done(main=main, v1=v1, by_sha=by_sha, files=files, cls=type(encoder).__name__, ids=ids,
             row=encoder.embeddings.word_embeddings.weight[7, :4].tolist())
        """,
        token=alice.token,
    )
    assert download.returncode == 0, download.output
    result = download.result
    assert folder_files(Path(result["v1"])) == expected
    assert folder_files(Path(result["by_sha"])) == expected
    assert folder_files(Path(result["main"])) == {**expected, "README.md": b"# Tiny BERT\n\nA test model.\n"}
    assert Path(result["files"]["v1"]).read_bytes() == expected["config.json"]
    assert Path(result["files"]["production"]).read_bytes() == expected["config.json"]
    assert Path(result["files"]["main"]).read_bytes().startswith(b"# Tiny BERT")
    assert result["cls"] == "BertModel"
    assert result["ids"][0] == 101
    assert result["ids"][-1] == 102
    with safe_open(str(folder / "model.safetensors"), "np") as weights:
        assert result["row"] == pytest.approx(weights.get_tensor("embeddings.word_embeddings.weight")[7, :4].tolist())


def test_upload_without_disabling_xet_names_the_fix(
    hf: Callable[..., ClientRun], make_member: Callable[..., Member], bert_folder: Path
) -> None:
    alice = make_member("alice")
    run = hf(
        f"""
        from huggingface_hub import HfApi
        api = HfApi()
        api.create_repo({REPO!r})
        api.upload_folder(repo_id={REPO!r}, folder_path={str(bert_folder)!r})
        """,
        token=alice.token,
        xet=True,
    )
    assert run.returncode != 0
    # What the user reads: the last line of the error names the setting.
    last = [line for line in run.output.splitlines() if line.strip()][-1]
    assert "HF_HUB_DISABLE_XET=1" in last, run.output
    assert not ModelVersion.objects.filter(registered_model__slug="tiny-bert").exists()


def test_a_client_with_xet_downloads_over_http(
    hf: Callable[..., ClientRun], make_member: Callable[..., Member], bert_folder: Path, tmp_path: Path
) -> None:
    alice = make_member("alice")
    assert _upload_new(hf, alice, bert_folder).returncode == 0
    run = hf(f"done(path=__import__('huggingface_hub').snapshot_download({REPO!r}))", token=alice.token, xet=True)
    assert run.returncode == 0, run.output
    assert folder_files(Path(run.result["path"])) == folder_files(bert_folder)


def _upload_new(hf: Callable[..., ClientRun], member: Member, folder: Path) -> ClientRun:
    return hf(
        f"""
        from huggingface_hub import HfApi
        HfApi().create_repo({REPO!r}, exist_ok=True)
        info = HfApi().upload_folder(repo_id={REPO!r}, folder_path={str(folder)!r})
        done(oid=info.oid)
        """,
        token=member.token,
    )


def test_private_repo_is_not_found_for_another_team_and_anonymous(
    hf: Callable[..., ClientRun], make_member: Callable[..., Member], make_model: Callable[..., Any]
) -> None:
    alice = make_member("alice", "Team A")
    bob = make_member("bob", "Team B")
    make_model("Secret", team=alice.user.teams.get(), visibility=Visibility.PRIVATE)
    code = """
        from huggingface_hub import HfApi, hf_hub_download, snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError
        seen = {}
        for repo in ("team-a/secret", "team-a/no-such-model"):
            for name, call in (
                ("info", lambda: HfApi().model_info(repo)),
                ("snapshot", lambda: snapshot_download(repo, cache_dir="c")),
                ("file", lambda: hf_hub_download(repo, "model.safetensors", cache_dir="c")),
            ):
                try:
                    call()
                    seen[f"{repo} {name}"] = "visible"
                except RepositoryNotFoundError:
                    seen[f"{repo} {name}"] = "RepositoryNotFoundError"
                except Exception as exc:
                    seen[f"{repo} {name}"] = type(exc).__name__
        done(**seen)
        """
    for token in (bob.token, None):
        run = hf(code, token=token)
        assert run.returncode == 0, run.output
        assert set(run.result.values()) == {"RepositoryNotFoundError"}, run.result
    own = hf("done(sha=__import__('huggingface_hub').HfApi().model_info('team-a/secret').sha)", token=alice.token)
    assert own.returncode == 0, own.output
    assert len(own.result["sha"]) == 40


def test_pickle_only_folder_is_refused_and_nothing_is_stored(
    hf: Callable[..., ClientRun], make_member: Callable[..., Member], bert_folder: Path, tmp_path: Path
) -> None:
    alice = make_member("alice")
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copyfile(bert_folder / "config.json", folder / "config.json")
    weights = b"\x80\x02pickled weights that could run code" * 1000
    (folder / "pytorch_model.bin").write_bytes(weights)
    run = hf(
        f"""
        from huggingface_hub import HfApi
        HfApi().create_repo({REPO!r})
        try:
            HfApi().upload_folder(repo_id={REPO!r}, folder_path={str(folder)!r})
            done(error=None)
        except Exception as exc:
            done(error=str(exc), kind=type(exc).__name__)
        """,
        token=alice.token,
    )
    assert run.returncode == 0, run.output
    assert "pytorch_model.bin is a pickle file" in run.result["error"]
    assert "safetensors" in run.result["error"]
    assert not ModelVersion.objects.filter(registered_model__slug="tiny-bert").exists()
    assert not artifact_exists(hashlib.sha256(weights).hexdigest())
