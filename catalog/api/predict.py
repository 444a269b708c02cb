"""``POST /api/v1/models/{slug}/predict``: a model's served ONNX variant answers text."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view, throttle_classes
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from catalog.api.errors import COMMON_ERRORS, NOT_FOUND_EXAMPLE, ApiError, error_responses
from catalog.api.fields import StrictStringsMixin
from catalog.selectors.visibility import models_visible
from catalog.services.predict import PredictUnavailable, input_limits, predict_texts, predict_variant
from modellibrary.security.throttling import ApiAnonRateThrottle, ApiUserRateThrottle, _rate


class PredictRateThrottle(ScopedRateThrottle):
    """Predictions per token (or session user; anonymous: per address), from
    ``API_THROTTLE_PREDICT`` (the ``predict`` scope of DEFAULT_THROTTLE_RATES)."""

    scope_attr = "throttle_scope"

    def get_rate(self) -> str | None:  # read at request time: settings may change in tests
        rates = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {})
        return _rate(getattr(settings, "API_THROTTLE_PREDICT", rates.get("predict")))

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope = "predict"
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super(ScopedRateThrottle, self).allow_request(request, view)


class PredictRequestSerializer(StrictStringsMixin, serializers.Serializer):  # type: ignore[type-arg]
    inputs = serializers.ListField(
        child=serializers.CharField(allow_blank=False, trim_whitespace=False, max_length=100_000),
        min_length=1,
        help_text="Sentences to classify (or, for an encoder, to match with sample sentences). "
        "The count and length limits come from the version's input schema.",
    )
    version = serializers.IntegerField(required=False, min_value=1, help_text="A version number.")
    alias = serializers.SlugField(required=False, max_length=40, help_text="An alias, e.g. production.")


class PredictionSerializer(serializers.Serializer):  # type: ignore[type-arg]
    label = serializers.CharField(  # type: ignore[assignment]
        help_text="The top label (encoders: the nearest sample sentence)."
    )
    score = serializers.FloatField(help_text="Its probability (encoders: cosine similarity).")
    scores = serializers.DictField(child=serializers.FloatField(), help_text="Every label's score.")


class PredictResponseSerializer(serializers.Serializer):  # type: ignore[type-arg]
    predictions = PredictionSerializer(many=True)
    model = serializers.CharField()
    version = serializers.IntegerField()
    variant = serializers.CharField(help_text="The served variant that answered, e.g. onnx-int8.")
    latency_ms = serializers.FloatField(help_text="Time spent running the inputs (loading excluded).")
    model_url = serializers.URLField()


@extend_schema(
    request=PredictRequestSerializer,
    responses={
        200: OpenApiResponse(PredictResponseSerializer, description="One prediction per input, in order."),
        404: OpenApiResponse(
            error_responses(404)[404].response,
            description="No such model visible to you (the same answer for a private one of another team).",
            examples=[NOT_FOUND_EXAMPLE],
        ),
        409: OpenApiResponse(
            error_responses(409)[409].response,
            description="The version takes no text here or has no served ONNX variant (`code`: `not_servable`).",
        ),
        **error_responses(400, 401, 403, 415, 422, *COMMON_ERRORS),
    },
    description="Run sentences through the model's fastest served CPU ONNX variant (production alias, else "
    "the latest ready version, unless `version` or `alias` names one). Rate-limited per token "
    "(`API_THROTTLE_PREDICT`).",
)
@api_view(["POST"])
@throttle_classes([ApiUserRateThrottle, ApiAnonRateThrottle, PredictRateThrottle])
def model_predict(request: Request, slug: str) -> Response:
    model = models_visible(user=request.user).filter(slug=slug).first()
    if model is None:
        raise NotFound("No model with that slug is visible to you.")
    form = PredictRequestSerializer(data=request.data)
    form.is_valid(raise_exception=True)
    data = form.validated_data
    if "version" in data and "alias" in data:
        raise ApiError(
            422,
            "Give a version or an alias, not both.",
            "unprocessable",
            errors={"alias": ["Give a version or an alias, not both."]},
        )
    try:
        version, variant = predict_variant(model=model, version=data.get("version"), alias=data.get("alias", ""))
    except PredictUnavailable as exc:
        if "has no version" in str(exc) or "has no alias" in str(exc):
            field = "alias" if "alias" in str(exc) else "version"
            raise ApiError(422, str(exc), "unprocessable", errors={field: [str(exc)]}) from exc
        raise ApiError(409, str(exc), "not_servable") from exc
    limits = input_limits(version)
    errors: list[str] = []
    texts: list[str] = data["inputs"]
    if len(texts) > limits.max_inputs:
        errors.append(f"At most {limits.max_inputs} inputs per request ({len(texts)} given).")
    for i, text in enumerate(texts):
        if len(text) > limits.max_chars:
            errors.append(f"Input {i} has {len(text)} characters; the limit is {limits.max_chars}.")
        elif not text.strip():
            errors.append(f"Input {i} is blank.")
        elif "\x00" in text:
            errors.append(f"Input {i} contains a NUL character.")
    if errors:
        # Well formed, but beyond what this version takes: 422, every problem listed.
        raise ApiError(422, errors[0], "unprocessable", errors={"inputs": errors})
    result = predict_texts(version=version, variant=variant, texts=texts)
    body = {
        "predictions": [{"label": p.label, "score": p.score, "scores": p.scores} for p in result.predictions],
        "model": model.slug,
        "version": version.version,
        "variant": variant.name,
        "latency_ms": result.latency_ms,
        "model_url": request.build_absolute_uri(reverse("catalog:model_detail", args=[model.slug])),
    }
    return Response(PredictResponseSerializer(body).data)
