from __future__ import annotations

from django.urls import path

from catalog.views import catalog, files, finetune

app_name = "catalog"

urlpatterns = [
    path("", catalog.catalog_index, name="index"),
    path("models/<slug:slug>/", catalog.model_detail, name="model_detail"),
    path("models/<slug:slug>/v<int:version>/compile/", catalog.version_compile_view, name="version_compile"),
    path("finetune/new/", finetune.finetune_new, name="finetune_new"),
    path("jobs/<int:job_id>/", finetune.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/cancel/", finetune.job_cancel_view, name="job_cancel"),
    path(
        "models/<slug:slug>/v<int:version>/files/<str:name>",
        files.version_file_download,
        name="version_file",
    ),
]
