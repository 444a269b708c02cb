from __future__ import annotations

from django.urls import path

from catalog.views import catalog, files

app_name = "catalog"

urlpatterns = [
    path("", catalog.catalog_index, name="index"),
    path("models/<slug:slug>/", catalog.model_detail, name="model_detail"),
    path(
        "models/<slug:slug>/v<int:version>/files/<str:name>",
        files.version_file_download,
        name="version_file",
    ),
]
