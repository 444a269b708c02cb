"""python -m pullcli [pull] MODEL ... -o DIR      fetch one verified bundle (pull is the default)
python -m pullcli push FOLDER --model TEAM/NAME    register a folder as a new version

A model whose slug is literally ``push`` or ``pull`` is pulled with
``python -m pullcli pull push ...``. ``-h`` after either command shows its options.
"""

from __future__ import annotations

import sys

from pullcli import pull, push


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["push"]:
        return push.main(argv[1:])
    if argv[:1] == ["pull"]:
        argv = argv[1:]
    return pull.main(argv)


if __name__ == "__main__":
    sys.exit(main())
