"""Pure ML code: no Django imports. Paths and plain data in, dataclasses out.

Heavy libraries (torch, transformers, onnxruntime) are imported inside
functions so that the web process never loads them.
"""
