"""``pull`` and ``push``: a Model Library server from the command line.

Standard library only, so that deploy tooling can run it anywhere:

    python -m pullcli support-ticket-router --runtime onnxruntime --precision int8 --hardware cpu -o ./model
    python -m pullcli push ./my-bert --model my-team/my-bert --summary "Routes support tickets"
"""
