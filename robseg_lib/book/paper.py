"""The paper's own numbers, stored as data (transcribed tables of arXiv 2306.12941 v2).

They are shown beside ours in the book and never typed into a notebook. Columns: ``eps_255`` is the
radius in /255 (0 = clean), ``acc`` and ``miou`` are percentages, empty cells were not reported.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["list_tables", "table"]

_PACKAGE = "robseg_lib.paper_data"


def list_tables() -> list[str]:
    """Names of the stored tables (file names without ``.csv``)."""
    return sorted(p.name[:-4] for p in resources.files(_PACKAGE).iterdir() if p.name.endswith(".csv"))


def table(name: str) -> pd.DataFrame:
    """One of the paper's tables, e.g. ``table("table1_attacks")``."""
    valid = list_tables()
    if name not in valid:
        raise ValueError(f"unknown paper table {name!r}; valid: {', '.join(valid)}")
    with resources.files(_PACKAGE).joinpath(f"{name}.csv").open() as f:
        return pd.read_csv(f)
