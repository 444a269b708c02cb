"""Model families: the code behind a model's fit(), predict() and export.

* ``mlp-classifier`` — a small torch MLP over numeric features (tabular data,
  flattened small images).
* ``sentence-encoder`` — a transformer encoder with mean pooling (MiniLM).
* ``text-classifier`` — a transformer encoder plus a classification head.
"""

FAMILIES = ("mlp-classifier", "sentence-encoder", "text-classifier")
