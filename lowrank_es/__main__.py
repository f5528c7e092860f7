"""Command line: ``python -m lowrank_es claims [--json PATH] [--md PATH]``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "claims":
        print("usage: python -m lowrank_es claims [--json PATH] [--md PATH] [--no-live] [--only PREFIX]")
        return 2
    from lowrank_es.claims.cli import main as claims_main

    return claims_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
