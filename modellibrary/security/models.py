"""No models: the module exists so that ``migrate`` sends this app its
``post_migrate`` signal (Django skips apps without one), which creates the
security cache table (see apps.py)."""
