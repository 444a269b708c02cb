"""Hugging Face Hub compatibility, mounted at ``/hf/``.

``huggingface_hub`` (and ``transformers``, which downloads through it) talks to
the catalogue when ``HF_ENDPOINT=http://host:port/hf``: ``create_repo``,
``upload_folder`` (preupload → LFS batch with the basic transfer → NDJSON
commit), ``snapshot_download``, ``hf_hub_download`` and ``from_pretrained``.

- a repo id is ``<team-slug>/<model-slug>``; a revision is ``main`` (the latest
  ready version), ``v<N>``, an alias (``production``, ``staging``…) or the
  40-hex commit id of a version (:func:`catalog.hub.selectors.version_commit_id`);
- every commit creates a new immutable version through the registration
  service; files are blobs of the content-addressed artifact store and every
  file is exposed as an LFS object (its ETag is its sha256);
- the Xet protocol is not spoken: its token routes answer an error telling the
  user to set ``HF_HUB_DISABLE_XET=1``, and downloads never advertise Xet.

The exact requests and headers are in ``../shared/design/hf-hub-protocol.md``.
"""
