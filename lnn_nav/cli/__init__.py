"""The `lnn-nav` command line. Thin: each sub-command module parses its
arguments and calls a library function.

A sub-command module exposes `register(subparsers)`, which adds its parser and
sets `func` (a callable taking the parsed namespace and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Each entry is a module under lnn_nav.cli; its parsers are added in this order.
COMMAND_MODULES = ("info", "scene", "collect", "train", "evaluate", "export", "fly")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lnn-nav",
        description="Liquid neural network navigation for small drones.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"lnn_nav.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"lnn-nav {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
