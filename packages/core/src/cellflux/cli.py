"""The ``cellflux`` command line: ``plugins``, ``demo`` and the subcommands plugins add."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence

from ._registry import Registry, default_registry
from ._version import __version__
from .plugin import parse_target

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _build_parser(registry: Registry) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cellflux", description="Single-cell dynamics the scanpy way.")
    parser.add_argument("--version", action="version", version=f"cellflux {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("plugins", help="list installed plugins, their versions and what they provide")

    demo = sub.add_parser("demo", help="run the pipeline on simulated data and write the results")
    demo.add_argument("--out", default="cellflux-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--n-cells", type=int, default=None, help="cells to simulate (default 3000; --quick 1000)")
    demo.add_argument("--n-genes", type=int, default=None, help="genes to simulate (default 500; --quick 200)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--quick", action="store_true", help="a small, fast run")
    demo.add_argument("--overwrite", action="store_true", help="replace files in an existing output folder")

    for name in registry.names("commands"):
        try:
            plugin, command = registry.command(name)
        except Exception as error:  # a conflict is reported when the command is used
            sub.add_parser(name, help=f"(unavailable: {error})", add_help=False)
            continue
        p = sub.add_parser(name, help=f"{command.help} [{plugin.distribution}]", add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _print_plugins(registry: Registry) -> int:
    if not registry.plugins:
        print("No cellflux plugins are installed. Install one, e.g.: pip install cellflux-kernels")
        return 0
    for info in registry.plugins:
        if not info.ok:
            print(f"{info.name}  BROKEN ({info.entry_point}): {info.error}")
            continue
        assert info.manifest is not None
        print(f"{info.name}  {info.distribution} {info.version}")
        for namespace in ("tl", "pl", "pp"):
            names = sorted(info.manifest.functions(namespace))
            if names:
                print(f"  {namespace}: {', '.join(names)}")
        if info.manifest.commands:
            print(f"  commands: {', '.join(sorted(info.manifest.commands))}")
    for message in registry.conflicts():
        print(f"CONFLICT: {message}")
    return 1 if registry.conflicts() else 0


def _run_plugin_command(registry: Registry, name: str, args: list[str]) -> int:
    _, command = registry.command(name)
    module_name, attr = parse_target(command.target)
    func = importlib.import_module(module_name)
    for part in attr.split("."):
        func = getattr(func, part)
    result = func(args)
    return int(result or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cellflux`` command line.

    Parameters
    ----------
    argv
        The arguments (without the program name); by default ``sys.argv[1:]``.

    Returns
    -------
    The process exit code.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = default_registry()
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    parser = _build_parser(registry)
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command is None:
            parser.print_help()
            return 0
        if args.command == "plugins":
            return _print_plugins(registry)
        if args.command == "demo":
            from ._demo import run_demo

            run_demo(
                args.out,
                n_cells=args.n_cells,
                n_genes=args.n_genes,
                seed=args.seed,
                quick=args.quick,
                overwrite=args.overwrite,
            )
            return 0
        return _run_plugin_command(registry, args.command, args.args)
    except (ValueError, KeyError, FileExistsError, FileNotFoundError, ImportError, RuntimeError) as error:
        if args.verbose >= 2:
            raise
        print(f"cellflux {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
