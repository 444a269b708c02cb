from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from catalog.api import deploy, finetune, lists, predict, registration, views

app_name = "api"

urlpatterns = [
    path("models/", views.models_list, name="models"),
    path("models/<slug:slug>/", views.model_detail, name="model"),
    path("models/<slug:slug>/versions/", registration.model_versions_create, name="model_versions"),
    path("models/<slug:slug>/aliases/", registration.model_aliases_set, name="model_aliases"),
    path("models/<slug:slug>/aliases/<slug:alias>/", registration.model_alias_delete, name="model_alias"),
    path("models/<slug:slug>/lifecycle/", registration.model_lifecycle, name="model_lifecycle"),
    path("models/<slug:slug>/card/", registration.model_card, name="model_card"),
    path("models/<slug:slug>/resolve", deploy.model_resolve, name="resolve"),
    path("models/<slug:slug>/predict", predict.model_predict, name="model_predict"),
    path("variants/<int:variant_id>/download", deploy.variant_download, name="variant_download"),
    path("versions/<int:version_id>/compile/", deploy.version_compile_request, name="version_compile"),
    path("taxonomy/<str:kind>/", views.taxonomy, name="taxonomy"),
    path("datasets/", finetune.datasets_create, name="datasets"),
    path("finetune-jobs/", finetune.finetune_jobs_create, name="finetune_jobs"),
    path("finetune-jobs/<int:job_id>/", finetune.finetune_job_detail, name="finetune_job"),
    path("evaluations/", lists.evaluations, name="evaluations"),
    path("finetune-jobs/<int:job_id>/cancel/", finetune.finetune_job_cancel, name="finetune_job_cancel"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves its start-up script from a URL (no inline script: CSP).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
]
