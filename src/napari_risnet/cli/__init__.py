"""`napari-risnet` command line: evaluate, segment, replay, export, train, finetune, average,
pack, demo (``commands``), their parser (``parser``) and the checks on their input
(``checks``).

Thin over the library; imports what a subcommand needs only when it runs, so `--help` is
instant and the headless commands never touch napari or Qt.
"""
from __future__ import annotations

import sys
from typing import Sequence

from napari_risnet.cli.checks import join_click_values
from napari_risnet.cli.commands import METHODS, build_method
from napari_risnet.cli.parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; user errors end with a one-line message and exit status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(join_click_values(argv))
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError) as exc:  # OSError: unreadable / unwritable files
        print(f"napari-risnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


__all__ = ["METHODS", "build_method", "build_parser", "main"]
