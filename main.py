#!/usr/bin/env python3
"""FieldCRM — the one entry point: `python main.py [COMMAND]` (see `python main.py --help`).

On a fresh machine the first call sets itself up (bootstrap.py: a venv, the dependencies, compiled
translations); then the command runs inside that environment.
"""

import sys

import bootstrap


def main() -> int:
    bootstrap.ensure("test" if sys.argv[1:2] == ["test"] else "run")
    from bot.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
