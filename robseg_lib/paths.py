"""Where robseg_lib finds its profiles and keeps its caches and results: the one owner of these folders.

Profiles ship inside the package (``robseg_lib/profiles/``, which a checkout also shows as ``params/``), so a
wheel installed anywhere can load ``tiny`` and ``smoke``. Caches and results belong to a *workspace*: the
checkout when the package is imported from one (a ``pyproject.toml`` beside the package), else the current
directory. Environment variables override each folder.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CACHE_ENV",
    "PARAMS_ENV",
    "RESULTS_ENV",
    "cache_root",
    "params_root",
    "profile_results_root",
    "results_root",
    "workspace_root",
]

PARAMS_ENV = "ROBSEG_PARAMS"
CACHE_ENV = "ROBSEG_CACHE"
RESULTS_ENV = "ROBSEG_RESULTS"

_PACKAGE = Path(__file__).resolve().parent


def workspace_root() -> Path:
    """The checkout that holds this package, or the current directory for an installed package."""
    checkout = _PACKAGE.parent
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


def params_root() -> Path:
    """The folder of the profiles: ``$ROBSEG_PARAMS``, else the package's own ``profiles/``."""
    return Path(os.environ[PARAMS_ENV]) if os.environ.get(PARAMS_ENV) else _PACKAGE / "profiles"


def cache_root(root: str | Path | None = None) -> Path:
    """The cache root (trained models, backbones, class counts): ``root``, else ``$ROBSEG_CACHE``, else
    ``<workspace>/cache``."""
    if root is not None:
        return Path(root)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return workspace_root() / "cache"


def results_root() -> Path:
    """The root of every stored evaluation: ``$ROBSEG_RESULTS``, else ``<workspace>/results``."""
    return Path(os.environ[RESULTS_ENV]) if os.environ.get(RESULTS_ENV) else workspace_root() / "results"


def profile_results_root(profile: str) -> Path:
    """``<results root>/<profile>``: the evaluations of one profile."""
    return results_root() / profile
