from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from catalog.api import views

app_name = "api"

urlpatterns = [
    path("models/", views.models_list, name="models"),
    path("models/<slug:slug>/", views.model_detail, name="model"),
    path("taxonomy/<str:kind>/", views.taxonomy, name="taxonomy"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
