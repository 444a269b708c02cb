"""The Hub routes, mounted at ``/hf/`` (``HF_ENDPOINT=http://host:port/hf``).

Every pattern is named (``hub:<name>``) so that tests can enumerate them.
"""

from __future__ import annotations

from django.urls import path, re_path

from catalog.hub import views

app_name = "hub"

_REPO = "<str:namespace>/<str:name>"

urlpatterns = [
    path("api/repos/create", views.repo_create, name="repo_create"),
    path("api/validate-yaml", views.validate_yaml, name="validate_yaml"),
    path("api/agent-harnesses", views.agent_harnesses, name="agent_harnesses"),
    path(f"api/models/{_REPO}", views.model_info, name="model_info"),
    # A revision may hold "/" (refs/pr/1, quoted by the client and decoded by the server).
    path(f"api/models/{_REPO}/revision/<path:revision>", views.model_info, name="model_revision"),
    path(f"api/models/{_REPO}/tree/<str:revision>", views.tree, name="tree"),
    path(f"api/models/{_REPO}/tree/<str:revision>/<path:path>", views.tree, name="tree_path"),
    path(f"api/models/{_REPO}/paths-info/<str:revision>", views.paths_info, name="paths_info"),
    path(f"api/models/{_REPO}/preupload/<str:revision>", views.preupload, name="preupload"),
    path(f"api/models/{_REPO}/commit/<str:revision>", views.commit, name="commit"),
    path(f"api/models/{_REPO}/xet-write-token/<str:revision>", views.xet_token, name="xet_write_token"),
    path(f"api/models/{_REPO}/xet-read-token/<str:revision>", views.xet_token, name="xet_read_token"),
    path("xet-is-not-supported/set-HF_HUB_DISABLE_XET=1-and-retry", views.xet_unsupported, name="xet_unsupported"),
    path("<str:namespace>/<str:name>.git/info/lfs/objects/batch", views.lfs_batch, name="lfs_batch"),
    path("lfs/upload/<str:token>", views.lfs_upload, name="lfs_upload"),
    path(f"{_REPO}/resolve/<str:revision>/<path:filename>", views.resolve, name="resolve"),
    re_path(r"^api/(?P<rest>.*)$", views.not_found, name="api_not_found"),
    path(_REPO, views.repo_page, name="repo"),
    re_path(r"^(?P<rest>.*)$", views.not_found, name="not_found"),
]
