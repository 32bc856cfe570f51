"""Every task of the workspace as a nox session: tests, isolated, lint, docs, demo.

Run ``nox -l`` to list them. Installs pin torch to the CPU build through ``constraints.txt``.
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES = ["core", "kernels", "estimators", "gp-differential", "velocity-vae", "streaming-models"]
PLUGINS = PACKAGES[1:]
#: Suite packages a package depends on (installed from this checkout, since they are not on PyPI yet).
LOCAL_DEPS = {"estimators": ["kernels"]}
DUMMY_PLUGIN = "tests/dummy_plugin"
PYTHON = "3.11"

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests", "isolated", "lint", "docs"]


def _install(session: nox.Session, *args: str) -> None:
    session.install("-c", str(ROOT / "constraints.txt"), *args)


def _editable(*folders: str) -> list[str]:
    return [arg for folder in folders for arg in ("-e", folder)]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Every package and the suite-level tests in one environment (with the dummy third-party plugin)."""
    # every package with its test extra, and scanpy for the `cellflux demo`/`run` pipeline tests
    folders = [f"packages/{p}[test]" for p in PACKAGES]
    _install(session, *_editable(*folders), "-e", DUMMY_PLUGIN, "scanpy>=1.10")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
@nox.parametrize("package", PACKAGES)
def isolated(session: nox.Session, package: str) -> None:
    """One package alone in a fresh environment with only its own dependencies."""
    folders = _local_folders(package)
    _install(session, *folders[:-1], f"{folders[-1]}[test]")
    session.chdir(ROOT / "packages" / package)
    session.run("pytest", "--rootdir", ".", "-c", str(ROOT / "pyproject.toml"), "tests", *session.posargs)


def _local_folders(package: str) -> list[str]:
    if package == "core":
        return ["packages/core"]
    return ["packages/core", *(f"packages/{dep}" for dep in LOCAL_DEPS.get(package, [])), f"packages/{package}"]


@nox.session(python=PYTHON)
@nox.parametrize("package", PLUGINS)
def parity(session: nox.Session, package: str) -> None:
    """Parity tests against the reference implementation (``pytest -m parity``), references installed.

    A package opts in with ``benchmarks/reference-requirements.txt`` (the reference tools) and tests
    marked ``parity``. Extra arguments go to pytest (e.g. ``-- --full`` where a package supports it).
    """
    folder = ROOT / "packages" / package
    requirements = folder / "benchmarks" / "reference-requirements.txt"
    if not requirements.exists():
        session.skip(f"{package} has no parity tests yet")
    folders = _local_folders(package)
    _install(session, *folders[:-1], f"{folders[-1]}[test]", "-r", str(requirements))
    session.run("pytest", f"packages/{package}/tests", "-m", "parity", *session.posargs)


@nox.session(python=PYTHON)
@nox.parametrize("package", PLUGINS)
def bench(session: nox.Session, package: str) -> None:
    """Benchmarks side by side with the reference: ``benchmarks/run.py`` of the package.

    Results are written to ``packages/<package>/benchmarks/results/`` (small CSV/JSON, committed).
    ``nox -s "bench(package='kernels')" -- --full`` runs the full sizes.
    """
    folder = ROOT / "packages" / package
    runner = folder / "benchmarks" / "run.py"
    if not runner.exists():
        session.skip(f"{package} has no benchmarks yet")
    requirements = folder / "benchmarks" / "reference-requirements.txt"
    folders = _local_folders(package)
    extra = ["-r", str(requirements)] if requirements.exists() else []
    _install(session, *folders, *extra)
    session.run("python", str(runner), *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the workspace."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the Sphinx site into docs/_build/html, warnings as errors."""
    _install(session, *(f"packages/{p}" for p in PACKAGES), "-r", "docs/requirements.txt")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html", *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main job: ``cellflux demo`` into ./cellflux-demo."""
    _install(session, "-r", "requirements.txt")
    session.run("cellflux", "demo", "--overwrite", *session.posargs)
