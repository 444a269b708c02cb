"""Each registered model's sentence embedding, stored so that every process
and worker searches the same vectors."""

from __future__ import annotations

from django.db import models

from catalog.models import RegisteredModel


class EmbeddingSource(models.TextChoices):
    ENCODED = "encoded", "Encoded from the model's text"
    TEMPLATE = "template", "Derived from encoded templates (synthetic entries)"


class ModelEmbedding(models.Model):
    """A model's 384-d all-MiniLM-L6-v2 vectors as symmetric int8 with one scale
    (value ≈ byte × ``scale``): ``vector`` holds the profile vector (384 bytes)
    followed by one 384-byte vector per passage of the description and card
    (``discovery.services.model_text``). Stored with the sha256 of the text
    they were computed from and the encoder + recipe key: they are recomputed
    only when one of those changes."""

    model = models.OneToOneField(RegisteredModel, on_delete=models.CASCADE, primary_key=True, related_name="embedding")
    text_sha256 = models.CharField(max_length=64)
    encoder = models.CharField(max_length=40, help_text="which graph computed it, e.g. variant:… or local:…")
    source = models.CharField(max_length=10, choices=EmbeddingSource.choices, default=EmbeddingSource.ENCODED)
    vector = models.BinaryField()
    scale = models.FloatField()
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    def __str__(self) -> str:
        return f"embedding of model {self.model_id} ({self.encoder})"
