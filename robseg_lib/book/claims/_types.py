"""The claims' vocabulary: a claim, the evidence its check reads, the verdict it returns, and tolerances."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

ORDER_TOL = 0.1
"""Slack (percentage points) of an ordering: the paper's tables are rounded to 0.1."""
MATCH_TOL = 1.0
"""Slack (points) of "matches or beats": the paper's largest deficit in such a statement is 0.5 (Table 3)."""
PAPER_VAL_IMAGES = 1449
"""Images of the paper's Table 8 evaluation (PASCAL-VOC val); seed spreads scale with 1/sqrt(images)."""
BENCHMARK_TARGETS: dict[str, str] = {
    "bench_apgd_overhead": "one APGD iteration <= 1.10 x a bare forward+backward pass",
    "bench_at_overhead": "one k-step AT iteration <= 1.05 x (k+1) clean training iterations",
}
"""The benchmark scripts whose JSON output (``results/benchmarks/<name>.json``) the performance claims read."""

RESULT_COLUMNS = ("model", "attack", "eps_255", "n_iter", "seed", "n_images", "loss", "acc", "miou")
"""Columns of :attr:`Evidence.results`. ``attack`` is an :mod:`robseg_lib.book.experiments` spec (``"sea"``,
``"pgd:segpgd"``, ...) or ``"transfer:<source model>"``; ``loss`` is ``"clean"`` (``eps_255`` 0), an attacked loss,
``"worst case"`` (every run has one; a single-loss run's equals its loss) or a Table-7 pair (``"MCE+JS"``)."""
MODEL_COLUMNS = ("model", "arch", "regime", "steps", "epochs")
"""Columns of :attr:`Evidence.models`: ``arch`` is what models must share to be compared (the family, e.g.
``upernet``; for the paper's models data set, architecture and backbone)."""
TARGETED_COLUMNS = ("model", "target", "eps_255", "fraction", "clean_fraction")
"""Columns of :attr:`Evidence.targeted`: shares (%) of all pixels predicted as the target."""

ROBUST_IMAGE_COLUMNS = ("model", "eps_255", "attack", "robust_images")
"""Columns of :attr:`Evidence.robust_images`: share (%) of images an attack cannot fool on 99 % of their pixels."""

_PASS, _FAIL, _NOT_RUN = "pass", "fail", "not run"
_EPS = 1e-9
_WORST = "worst case"
_SEA_LOSSES = ("mce-bal", "mce", "js")
_PAIRS = ("MCE+MCE-Bal", "MCE+JS", "JS+MCE-Bal")


def _common_images(rows: pd.DataFrame, within: Sequence[str], across: Sequence[str]) -> pd.DataFrame:
    """Rows on the same images: per group of ``within``, those at the largest image count that each of its
    groups of ``across`` reaches (the smallest of their largest counts), so that compared numbers share images."""
    if rows.empty:
        return rows
    most = rows.groupby([*within, *across], dropna=False)["n_images"].transform("max")
    common = most.groupby([rows[key] for key in within]).transform("min")
    return rows[rows["n_images"] == common]


# ---------------------------------------------------------------------------------------------------------
# Data structures


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: ``status`` (pass / fail / not run), our numbers in words, and why."""

    status: str
    ours: str
    explanation: str


@dataclass(frozen=True)
class Evidence:
    """Everything the checks read: results (:data:`RESULT_COLUMNS`), models (:data:`MODEL_COLUMNS`) and more.

    Attributes:
        results: one row per (run, loss), Acc and mIoU in %.
        models: the recipe of every model.
        n_iter: the main setting's iterations (rows with other values serve the iteration claim only).
        seed: the main setting's seed (rows with other seeds serve the seed claim only).
        eps: the main radius in /255 (the paper's 4/255 in Table 3's "2.6 % Acc").
        targeted_eps: the radius in /255 of the targeted attacks the targeted claim reads (the paper's 2/255).
        targeted: targeted-attack shares (:data:`TARGETED_COLUMNS`).
        robust_images: the minimum-norm comparison of Fig. 6 (:data:`ROBUST_IMAGE_COLUMNS`).
        benchmarks: ``{script name: its JSON output}``.
        label: what the evidence is (``"tiny"``, ``"paper"``).
    """

    results: pd.DataFrame
    models: pd.DataFrame
    n_iter: int
    seed: int
    eps: float
    targeted_eps: float = 2.0
    targeted: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TARGETED_COLUMNS))
    robust_images: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ROBUST_IMAGE_COLUMNS))
    benchmarks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    label: str = ""

    def main(self) -> pd.DataFrame:
        """Rows at the main ``n_iter`` and ``seed``, on the same images at each radius: the most images that every
        model and attack at that radius covers (the first ones; see :func:`collect_evidence`)."""
        rows = self.results[(self.results["n_iter"] == self.n_iter) & (self.results["seed"] == self.seed)]
        return _common_images(rows, ["eps_255"], ["model", "attack"])

    def model_info(self, name: str) -> dict[str, Any] | None:
        """The recipe fields of model ``name`` (``None`` if unknown)."""
        rows = self.models[self.models["model"] == name]
        return None if rows.empty else rows.iloc[0].to_dict()


@dataclass(frozen=True)
class Claim:
    """One claim of the paper.

    Attributes:
        id: short stable name.
        statement: the claim, in the paper's terms.
        source: where the paper makes it (table, figure, section).
        check: computes the verdict from an :class:`Evidence`.
        paper: the paper's numbers in words (or a function computing them from the stored tables) where the check
            cannot run on the paper's tables (plots, text).
        flag: caveats of the paper's numbers ([U] items, transcriptions, internal inconsistencies).
    """

    id: str
    statement: str
    source: str
    check: Callable[[Evidence], Verdict]
    paper: str | Callable[[], str] = ""
    flag: str = ""

    def paper_text(self, paper: Evidence) -> str:
        """The paper's numbers in words: ``paper`` (text or a function of the stored tables), else the check's
        summary of the paper's own tables."""
        if callable(self.paper):
            return self.paper()
        return self.paper or self.check(paper).ours
