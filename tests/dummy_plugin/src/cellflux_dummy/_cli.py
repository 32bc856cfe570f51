"""``cellflux dummy``: a subcommand added by a plugin."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cellflux dummy", description="Say hello from the dummy plugin.")
    parser.add_argument("name", nargs="?", default="world")
    args = parser.parse_args(argv)
    print(f"hello, {args.name}, from cellflux-dummy-plugin")
    return 0
