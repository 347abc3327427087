"""The command line: `python -m hnm <verb> ...`, one argparse sub-command per verb, each calling one public function.

Defaults come from the dataclasses next to the code they configure; this file only translates flags.
"""

import argparse
import sys
from typing import List, Optional

from hnm.errors import HnmError


def _quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars on stderr")


# ---------------------------------------------------------------------------------------------------------- verbs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hnm",
        description="Ensemble hard-negative mining and cross-encoder re-ranking, from scratch.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (HnmError, FileNotFoundError) as e:
        print(f"hnm {args.verb}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
