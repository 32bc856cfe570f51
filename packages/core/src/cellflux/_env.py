"""Environment variables cellflux reads (read when used, never at import)."""

from __future__ import annotations

from typing import Final

__all__ = ["CACHE_DIR_ENV", "DATA_DIR_ENV"]

#: A folder holding local copies of the datasets (e.g. ``pancreas.h5ad``); tests point it at shared data.
DATA_DIR_ENV: Final = "CELLFLUX_DATA_DIR"
#: Overrides the download cache folder (default ``~/.cache/cellflux``).
CACHE_DIR_ENV: Final = "CELLFLUX_CACHE_DIR"
