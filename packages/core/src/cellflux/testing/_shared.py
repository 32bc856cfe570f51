"""Locating the shared real data used by tests and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

from .._env import DATA_DIR_ENV

__all__ = ["find_shared_data", "shared_file"]


def find_shared_data(start: str | Path | None = None) -> Path | None:
    """The folder holding the shared data, or ``None``.

    ``$CELLFLUX_DATA_DIR`` wins; otherwise the first ``shared/data`` found beside ``start`` (default
    the current directory) or any of its parents.
    """
    if os.environ.get(DATA_DIR_ENV):
        path = Path(os.environ[DATA_DIR_ENV])
        return path if path.is_dir() else None
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def shared_file(name: str, start: str | Path | None = None) -> Path | None:
    """The path of ``name`` in the shared data folder, or ``None`` when absent."""
    folder = find_shared_data(start)
    if folder is None:
        return None
    path = folder / name
    return path if path.is_file() else None
