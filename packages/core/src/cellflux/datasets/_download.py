"""Download a file once into a cache, verified by its SHA-256 checksum."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from .._env import CACHE_DIR_ENV, DATA_DIR_ENV

__all__ = ["cache_dir", "fetch", "sha256_of"]

logger = logging.getLogger(__name__)


_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The download cache: ``$CELLFLUX_CACHE_DIR``, else ``$XDG_CACHE_HOME/cellflux`` or ``~/.cache/cellflux``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cellflux"


def sha256_of(path: Path) -> str:
    """The hex SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, destination: Path, *, sha256: str | None = None, timeout: float = 60.0) -> Path:
    """Return ``destination``, downloading ``url`` there first if it is not cached yet.

    The download streams into a temporary file next to ``destination`` and is moved into place only
    when complete and, if ``sha256`` is given, verified. The digest is recorded in
    ``<destination>.sha256`` and checked again on every later use, so a truncated or altered cache
    file is detected.

    Parameters
    ----------
    url
        Where to download from (``https://``, ``http://`` or ``file://``).
    destination
        The cached file's path.
    sha256
        The expected hex digest; ``None`` records the digest of the first download.
    timeout
        Seconds to wait for the server.

    Returns
    -------
    The path of the verified file.
    """
    destination = Path(destination)
    record = destination.with_name(destination.name + ".sha256")
    if destination.exists():
        expected = sha256 or (record.read_text().strip() if record.exists() else None)
        if expected is not None:
            actual = sha256_of(destination)
            if actual != expected:
                raise OSError(
                    f"The cached file {destination} has SHA-256 {actual}, expected {expected}: it is corrupt or "
                    "was changed. Delete it to download it again."
                )
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s to %s", url, destination)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=destination.parent, prefix=destination.name, delete=False) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                while block := response.read(_CHUNK):
                    digest.update(block)
                    tmp.write(block)
        except Exception as error:
            tmp.close()
            os.unlink(tmp.name)
            raise OSError(
                f"Could not download {url}: {error}. Download it by hand and point ${DATA_DIR_ENV} at its folder."
            ) from error
    actual = digest.hexdigest()
    if sha256 is not None and actual != sha256:
        os.unlink(tmp.name)
        raise OSError(f"The download of {url} has SHA-256 {actual}, expected {sha256}; nothing was cached.")
    shutil.move(tmp.name, destination)
    record.write_text(actual + "\n")
    return destination
