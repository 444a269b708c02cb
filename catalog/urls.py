from __future__ import annotations

from django.urls import path

from catalog.views import catalog, compare, files, finetune, predict, registration, teams
from evaluations import views as evaluations

app_name = "catalog"

urlpatterns = [
    path("", catalog.catalog_index, name="index"),
    path("models/<slug:slug>/", catalog.model_detail, name="model_detail"),
    path("models/<slug:slug>/v<int:version>/compile/", catalog.version_compile_view, name="version_compile"),
    path("compare/", compare.compare, name="compare"),
    path("models/<slug:slug>/predict/", predict.model_predict, name="model_predict"),
    path("register/", registration.register_page, name="register"),
    path("register/upload/", registration.register_upload, name="register_upload"),
    path("register/confirm/", registration.register_confirm, name="register_confirm"),
    path("models/<slug:slug>/aliases/", registration.model_alias_view, name="model_alias"),
    path("models/<slug:slug>/lifecycle/", registration.model_lifecycle_view, name="model_lifecycle"),
    path("models/<slug:slug>/card/", registration.model_card_edit, name="model_card_edit"),
    path("models/<slug:slug>/delete/", registration.model_delete_view, name="model_delete"),
    path("teams/<slug:slug>/", teams.team_detail, name="team_detail"),
    path("teams/<slug:slug>/members/", teams.team_member_view, name="team_member"),
    path("profile/", teams.profile, name="profile"),
    path("finetune/new/", finetune.finetune_new, name="finetune_new"),
    path("jobs/", evaluations.my_jobs, name="my_jobs"),
    path("jobs/<int:job_id>/", finetune.job_detail, name="job_detail"),
    path("datasets/", evaluations.my_datasets, name="my_datasets"),
    path("datasets/<int:dataset_version_id>/leaderboard/", evaluations.dataset_leaderboard, name="dataset_leaderboard"),
    path("evaluations/new/", evaluations.evaluation_new, name="evaluation_new"),
    path("evaluations/<int:evaluation_id>/", evaluations.evaluation_detail, name="evaluation_detail"),
    path("jobs/<int:job_id>/cancel/", finetune.job_cancel_view, name="job_cancel"),
    path(
        "models/<slug:slug>/v<int:version>/files/<str:name>",
        files.version_file_download,
        name="version_file",
    ),
]
