"""Writes and state transitions (``<entity>_<action>(*, ...)``)."""
