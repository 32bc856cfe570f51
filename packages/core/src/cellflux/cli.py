"""The ``cellflux`` command line: ``plugins``, ``demo``, ``run`` and the subcommands plugins add."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from ._registry import Registry, default_registry
from ._version import __version__
from .plugin import load_target

__all__ = ["main"]

# kept in step with cellflux._pipeline (not imported here: the command line starts fast)
_STEPS = ("preprocess", "velocity", "kernels", "fates", "differential", "streaming")
_VELOCITY = ("vae", "scvelo", "precomputed")

logger = logging.getLogger(__name__)


def _build_parser(registry: Registry) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cellflux", description="Single-cell dynamics the scanpy way.")
    parser.add_argument("--version", action="version", version=f"cellflux {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("plugins", help="list installed plugins, their versions and what they provide")

    steps_help = "comma-separated steps (default all): " + ",".join(_STEPS)
    demo = sub.add_parser("demo", help="run the whole analysis on simulated data and write a report")
    demo.add_argument("--out", default="cellflux-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--n-cells", type=int, default=None, help="cells to simulate (default 3000; --quick 1000)")
    demo.add_argument("--n-genes", type=int, default=None, help="genes to simulate (default 500; --quick 200)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--quick", action="store_true", help="a small, fast run (steady-state velocity)")
    demo.add_argument(
        "--velocity", choices=_VELOCITY, default=None, help="velocity model (default vae; --quick scvelo)"
    )
    demo.add_argument("--steps", default=None, help=steps_help)
    demo.add_argument("--overwrite", action="store_true", help="replace files in an existing output folder")

    run = sub.add_parser("run", help="run the whole analysis on an h5ad file and write a report")
    run.add_argument("data", help="h5ad with raw counts in X (and spliced/unspliced layers for velocity)")
    run.add_argument("--out", default=None, help="output folder (default: <data>-cellflux)")
    run.add_argument("--velocity", choices=_VELOCITY, default="vae", help="velocity model (default: %(default)s)")
    run.add_argument("--cluster-key", default=None, help="obs column naming macrostates (default: clusters)")
    run.add_argument("--groupby", default=None, help="obs column of the conditions (default: condition)")
    run.add_argument("--conditions", nargs=2, default=None, metavar=("REF", "OTHER"), help="the two conditions")
    run.add_argument("--n-states", type=int, default=None, help="number of macrostates (default: from the clusters)")
    run.add_argument(
        "--n-terminal", type=int, default=None, help="number of terminal states (default: the stable ones)"
    )
    run.add_argument("--steps", default=None, help=steps_help)
    run.add_argument("--quick", action="store_true", help="fewer epochs and samples")
    run.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    run.add_argument("--overwrite", action="store_true", help="replace files in an existing output folder")

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
    result = load_target(command.target)(args)
    return int(result or 0)


def _steps(text: str | None) -> list[str] | None:
    if text is None:
        return None
    steps = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in steps if s not in _STEPS]
    if unknown or not steps:
        raise ValueError(f"unknown step(s) {unknown or text!r} in --steps; choose among {', '.join(_STEPS)}")
    return steps


def _run_pipeline_command(args: argparse.Namespace) -> int:
    from ._demo import run_demo, run_file

    if args.command == "demo":
        ctx = run_demo(
            args.out,
            n_cells=args.n_cells,
            n_genes=args.n_genes,
            seed=args.seed,
            quick=args.quick,
            steps=_steps(args.steps),
            velocity=args.velocity,
            overwrite=args.overwrite,
            stream=sys.stderr,
        )
    else:
        out = args.out or f"{args.data.removesuffix('.h5ad')}-cellflux"
        ctx = run_file(
            args.data,
            out,
            velocity=args.velocity,
            cluster_key=args.cluster_key,
            groupby=args.groupby,
            conditions=args.conditions,
            n_states=args.n_states,
            n_terminal=args.n_terminal,
            steps=_steps(args.steps),
            quick=args.quick,
            seed=args.seed,
            overwrite=args.overwrite,
            stream=sys.stderr,
        )
    return 1 if any(r.status == "failed" for r in ctx.records) else 0


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
        if args.command in ("demo", "run"):
            return _run_pipeline_command(args)
        return _run_plugin_command(registry, args.command, args.args)
    except (ValueError, KeyError, FileExistsError, FileNotFoundError, ImportError, RuntimeError) as error:
        if args.verbose >= 2:
            raise
        print(f"cellflux {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
