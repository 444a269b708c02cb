"""``pull``: fetch one verified model bundle from a Model Library server.

Standard library only, so that deploy tooling can run it anywhere:

    python -m pullcli support-ticket-router --runtime onnxruntime --precision int8 --hardware cpu -o ./model
"""
