"""Each registered model's sentence embedding, stored so that every process
and worker searches the same vectors."""

from __future__ import annotations

from django.db import models

from catalog.models import RegisteredModel


class EmbeddingSource(models.TextChoices):
    ENCODED = "encoded", "Encoded from the model's text"
    TEMPLATE = "template", "Derived from encoded templates (synthetic entries)"


class ModelEmbedding(models.Model):
    """384-d all-MiniLM-L6-v2 vector as per-row symmetric int8 (``vector`` is 384
    bytes, value ≈ byte × ``scale``), with the sha256 of the text it was computed
    from: a vector is recomputed only when that text (or the encoder) changes."""

    model = models.OneToOneField(RegisteredModel, on_delete=models.CASCADE, primary_key=True, related_name="embedding")
    text_sha256 = models.CharField(max_length=64)
    encoder = models.CharField(max_length=40, help_text="which graph computed it, e.g. variant:… or local:…")
    source = models.CharField(max_length=10, choices=EmbeddingSource.choices, default=EmbeddingSource.ENCODED)
    vector = models.BinaryField()
    scale = models.FloatField()
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    def __str__(self) -> str:
        return f"embedding of model {self.model_id} ({self.encoder})"
