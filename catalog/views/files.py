"""Downloads of a version's stored files (weights, config, tokenizer)."""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_GET

from catalog.selectors.visibility import models_visible
from catalog.storage import artifact_exists, artifact_open


@require_GET
def version_file_download(request: HttpRequest, slug: str, version: int, name: str) -> FileResponse:
    model = models_visible(user=request.user).filter(slug=slug).first()
    if model is None:
        raise Http404("No model with that slug is visible to you.")
    v = model.versions.filter(version=version).first()
    # The name only selects an entry of the version's file list; the stored
    # blob is found by its sha256, never by a path built from the request.
    entry = next((f for f in (v.files if v else []) if f["name"] == name), None)
    if entry is None:
        raise Http404("No such file in this version.")
    if not artifact_exists(entry["sha256"]):
        # Listed but absent from the store (a synthetic entry, a lost blob): a
        # plain "not found", never a 500 traceback.
        raise Http404("This file is missing from the artifact store.")
    response = FileResponse(artifact_open(entry["sha256"]), as_attachment=True, filename=f"{slug}-v{version}-{name}")
    response["X-Content-Type-Options"] = "nosniff"
    response["ETag"] = f'"{entry["sha256"]}"'
    return response
