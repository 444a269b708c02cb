"""The "try it" box of a text model's page: one typed sentence, answered by the
model's served ONNX variant (``catalog.services.predict``)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from catalog.selectors.visibility import models_visible
from catalog.services.predict import ENCODER_FAMILIES, PredictUnavailable, input_limits, predict_texts, predict_variant


@require_POST
def model_predict(request: HttpRequest, slug: str) -> HttpResponse:
    model = models_visible(user=request.user).filter(slug=slug).first()
    if model is None:
        raise Http404("No model with that slug is visible to you.")
    text = request.POST.get("text", "")
    raw_version = request.POST.get("version", "")
    context: dict[str, object] = {"model": model, "text": text}
    status = 200
    try:
        version_number = int(raw_version) if raw_version else None
        version, variant = predict_variant(model=model, version=version_number)
        limits = input_limits(version)
        if not text.strip():
            context["error"], status = "Type a sentence first.", 400
        elif len(text) > limits.max_chars:
            context["error"], status = f"At most {limits.max_chars} characters ({len(text)} typed).", 400
        else:
            result = predict_texts(version=version, variant=variant, texts=[text])
            prediction = result.predictions[0]
            context.update(
                prediction=prediction,
                ranked=sorted(prediction.scores.items(), key=lambda kv: -kv[1]),
                encoder=version.family in ENCODER_FAMILIES,
                version=version,
                variant=variant,
                latency_ms=result.latency_ms,
            )
    except ValueError:
        context["error"], status = "Unknown version.", 400
    except PredictUnavailable as exc:
        context["error"], status = str(exc), 409
    template = "catalog/predict_result.html#result" if request.htmx else "catalog/predict_result.html"  # type: ignore[attr-defined]
    return render(request, template, context, status=status)
