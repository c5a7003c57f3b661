"""The paper's claims as data, each with a check that computes pass / fail from our results (RobustBench style).

A :class:`Claim` holds a statement of the paper, where it comes from, the paper's numbers and a check. Checks
read an :class:`Evidence`: one tidy table of every finished evaluation of a profile, the models' recipe fields,
the targeted-attack fractions and the benchmark files. :func:`collect_evidence` gathers it from the results
folders the chapters wrote and never runs an attack: a claim whose results are missing is "not run".

The same checks run on the paper's own tables (:func:`paper_evidence`): the paper column of the status table is
the check's summary of the paper's numbers, so ours and the paper's are stated the same way, and a check that
failed on the paper's own numbers would be a wrong check (the tests assert that they all pass).

At the default scale (DigitScenes, tiny models) only orderings can be compared with the paper: the numbers
differ by design. At paper scale :func:`paper_cells` also compares every number with the paper's within a
tolerance.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from robseg_lib import experiments, zoo
from robseg_lib.evaluate import EvaluationResult, load_results
from robseg_lib.params import ParamSet
from robseg_lib.perturbations import TRANSFER_PREFIX, profile_results_root
from robseg_lib.reporting import paper_rows

__all__ = [
    "BENCHMARK_TARGETS",
    "CLAIMS",
    "MATCH_TOL",
    "MODEL_COLUMNS",
    "ORDER_TOL",
    "RESULT_COLUMNS",
    "TARGETED_COLUMNS",
    "Claim",
    "Evidence",
    "Verdict",
    "benchmark_path",
    "benchmark_table",
    "benchmark_timings",
    "chapter_verdicts",
    "collect_evidence",
    "load_benchmarks",
    "paper_cells",
    "paper_evidence",
    "status_table",
]

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
"""Columns of :attr:`Evidence.results`. ``attack`` is an :mod:`robseg_lib.experiments` spec (``"sea"``,
``"pgd:segpgd"``, ...) or ``"transfer:<source model>"``; ``loss`` is ``"clean"`` (``eps_255`` 0), an attacked loss,
``"worst case"`` (every run has one; a single-loss run's equals its loss) or a Table-7 pair (``"MCE+JS"``)."""
MODEL_COLUMNS = ("model", "arch", "regime", "steps", "epochs")
"""Columns of :attr:`Evidence.models`: ``arch`` is what models must share to be compared (the family, e.g.
``upernet``; for the paper's models data set, architecture and backbone)."""
TARGETED_COLUMNS = ("model", "target", "eps_255", "fraction", "clean_fraction")
"""Columns of :attr:`Evidence.targeted`: shares (%) of all pixels predicted as the target."""

_PASS, _FAIL, _NOT_RUN = "pass", "fail", "not run"
_EPS = 1e-9
_WORST = "worst case"
_SEA_LOSSES = ("mce-bal", "mce", "js")
_PAIRS = ("MCE+MCE-Bal", "MCE+JS", "JS+MCE-Bal")


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


# ---------------------------------------------------------------------------------------------------------
# Helpers over the tidy tables


def _common_images(rows: pd.DataFrame, within: Sequence[str], across: Sequence[str]) -> pd.DataFrame:
    """Rows on the same images: per group of ``within``, those at the largest image count that each of its
    groups of ``across`` reaches (the smallest of their largest counts), so that compared numbers share images."""
    if rows.empty:
        return rows
    most = rows.groupby([*within, *across], dropna=False)["n_images"].transform("max")
    common = most.groupby([rows[key] for key in within]).transform("min")
    return rows[rows["n_images"] == common]


def _le(a: float, b: float, tol: float = ORDER_TOL) -> bool:
    return a <= b + tol + _EPS


def _fmt(eps: float) -> str:
    return f"{eps:g}/255"


def _worst(rows: pd.DataFrame, attack: str = "sea") -> pd.DataFrame:
    """Worst-case rows of ``attack`` at radii > 0."""
    return rows[(rows["attack"] == attack) & (rows["loss"] == _WORST) & (rows["eps_255"] > 0)]


def _cell(rows: pd.DataFrame, model: str, eps: float, attack: str = "sea", loss: str = _WORST) -> pd.Series | None:
    hit = rows[
        (rows["model"] == model) & (rows["eps_255"] == eps) & (rows["attack"] == attack) & (rows["loss"] == loss)
    ]
    return None if hit.empty else hit.iloc[0]


def _count(flags: Iterable[bool]) -> tuple[int, int]:
    flags = list(flags)
    return sum(flags), len(flags)


def _not_run(what: str) -> Verdict:
    return Verdict(_NOT_RUN, "–", what)


def _verdict(ok: bool, ours: str, explanation: str) -> Verdict:
    return Verdict(_PASS if ok else _FAIL, ours, explanation)


def _single_attacks(rows: pd.DataFrame) -> pd.DataFrame:
    """Single-attack rows at radii > 0: SEA's components and the PGD baselines (one row per attack)."""
    components = rows[(rows["attack"] == "sea") & rows["loss"].isin(_SEA_LOSSES)]
    baselines = rows[rows["attack"].str.startswith("pgd:") & (rows["loss"] == _WORST)]
    out = pd.concat([components.assign(name=components["loss"]), baselines.assign(name=baselines["attack"])])
    return out[out["eps_255"] > 0]


def _pairs(models: pd.DataFrame, regimes: tuple[str, str]) -> list[tuple[pd.Series, pd.Series]]:
    """Models of the two regimes with equal architecture, steps and epochs."""
    a = models[models["regime"] == regimes[0]]
    b = models[models["regime"] == regimes[1]]
    merged = a.merge(b, on=["arch", "steps", "epochs"], suffixes=("_a", "_b"))
    return [
        (models[models["model"] == r["model_a"]].iloc[0], models[models["model"] == r["model_b"]].iloc[0])
        for _, r in merged.iterrows()
    ]


def _model_label(info: Mapping[str, Any]) -> str:
    return f"{info['arch']} {info['steps']:g} steps {info['epochs']:g} ep"


# ---------------------------------------------------------------------------------------------------------
# Checks: evaluation (Tables 1, 6-9, Figs. 2, 4, 5)


def _check_sea_below_every_attack(ev: Evidence) -> Verdict:
    rows = ev.main()
    singles = _single_attacks(rows)
    if not singles["attack"].str.startswith("pgd:").any():
        return _not_run("no SegPGD / CosPGD results at the main settings (attack comparison chapter)")
    counts = {"Acc": [], "mIoU": []}
    bad = []
    for (model, eps), part in singles.groupby(["model", "eps_255"]):
        sea = _cell(rows, model, eps)
        if sea is None or not part["attack"].str.startswith("pgd:").any():
            continue
        for metric, col in (("Acc", "acc"), ("mIoU", "miou")):
            ok = _le(sea[col], part[col].min())
            counts[metric].append(ok)
            if not ok:
                name = part.loc[part[col].idxmin(), "name"]
                bad.append(f"{model} {_fmt(eps)} {metric}: SEA {sea[col]:.1f} > {name} {part[col].min():.1f}")
    if not counts["Acc"]:
        return _not_run("no model and radius with both SEA and a PGD baseline")
    summary = ", ".join(f"{m} {k}/{n}" for m, (k, n) in ((m, _count(v)) for m, v in counts.items()))
    ok = all(all(v) for v in counts.values())
    why = "; ".join(bad) if bad else f"SEA is at most every single attack (within {ORDER_TOL}) in every cell"
    return _verdict(ok, f"{summary} cells", why)


def _check_sea_beats_baselines(ev: Evidence) -> Verdict:
    rows = ev.main()
    sea = _worst(rows)
    baselines = sorted(a for a in rows["attack"].unique() if a.startswith("pgd:"))
    if not baselines or sea.empty:
        return _not_run("no SEA and SegPGD / CosPGD results at the same settings")
    parts, ok, why = [], True, []
    for attack in baselines:
        base = _worst(rows, attack).merge(sea, on=["model", "eps_255"], suffixes=("_b", "_s"))
        if base.empty:
            continue
        gains = {m: base[f"{m}_b"] - base[f"{m}_s"] for m in ("acc", "miou")}
        name = attack.removeprefix("pgd:")
        parts.append(
            f"over {name}: max gain Acc {gains['acc'].max():.1f} / mIoU {gains['miou'].max():.1f}, "
            f"mean {gains['acc'].mean():.1f} / {gains['miou'].mean():.1f} ({len(base)} cells)"
        )
        for metric, gain in gains.items():
            if gain.mean() <= 0:
                ok = False
                why.append(f"{name}: SEA not lower on average in {metric}")
    if not parts:
        return _not_run("no cell with both SEA and a baseline")
    return _verdict(ok, "; ".join(parts), "; ".join(why) or "SEA is lower than each baseline on average, both metrics")


def _best_loss_share(ev: Evidence, loss: str, metric: str) -> Verdict:
    singles = _single_attacks(ev.main())
    if singles.empty:
        return _not_run("no SEA results at the main settings")
    flags = []
    for _, part in singles.groupby(["model", "eps_255"]):
        if loss in set(part["name"]):
            best = part[metric].min()
            flags.append(_le(part.loc[part["name"] == loss, metric].iloc[0], best, 0.0))
    k, n = _count(flags)
    if n == 0:
        return _not_run(f"no results of {loss}")
    return _verdict(2 * k > n, f"{k}/{n} cells (ties count)", f"{loss} has the lowest {metric} in {k} of {n} cells")


def _check_mcebal_best_miou(ev: Evidence) -> Verdict:
    return _best_loss_share(ev, "mce-bal", "miou")


def _check_mce_best_acc(ev: Evidence) -> Verdict:
    return _best_loss_share(ev, "mce", "acc")


def _check_red_eps(ev: Evidence) -> Verdict:
    rows = ev.main()
    red = pd.concat(
        [
            rows[(rows["attack"] == "sea") & rows["loss"].isin(_SEA_LOSSES)],
            rows[rows["attack"].str.startswith("apgd:") & (rows["loss"] != _WORST)],
        ]
    )
    alts = rows[rows["attack"].str.startswith(("apgd-const:", "apgd-restarts:")) & (rows["loss"] != _WORST)]
    red, alts = red[red["eps_255"] > 0], alts[alts["eps_255"] > 0]
    if alts.empty or red.empty:
        return _not_run("no constant-ε APGD results beside red-ε ones (radius reduction chapter)")
    red = red.drop_duplicates(["model", "eps_255", "loss"])
    joined = alts.merge(red, on=["model", "eps_255", "loss"], suffixes=("_alt", "_red"))
    flags, bad = [], []
    for _, r in joined.iterrows():
        for metric in ("acc", "miou"):
            ok = _le(r[f"{metric}_red"], r[f"{metric}_alt"])
            flags.append(ok)
            if not ok:
                bad.append(f"{r['model']} {_fmt(r['eps_255'])} {r['loss']} {metric} vs {r['attack_alt']}")
    k, n = _count(flags)
    if n == 0:
        return _not_run("no loss attacked both with and without radius reduction")
    why = f"red-ε at most the alternative (within {ORDER_TOL}) in {k} of {n} comparisons; pass at >= 80 %"
    if bad:
        why += "; not in: " + ", ".join(bad[:6]) + (" ..." if len(bad) > 6 else "")
    return _verdict(k >= 0.8 * n, f"{k}/{n} comparisons", why)


def _check_iterations(ev: Evidence) -> Verdict:
    rows = ev.results
    rows = rows[
        (rows["attack"] == "sea") & (rows["loss"] == _WORST) & (rows["seed"] == ev.seed) & (rows["eps_255"] > 0)
    ]
    groups = []
    for key, part in rows.groupby(["model", "eps_255", "n_images"]):
        part = part.drop_duplicates("n_iter").sort_values("n_iter")
        if len(part) >= 3:
            groups.append((key, part))
    if not groups:
        return _not_run("no SEA runs at three or more iteration counts (iterations chapter)")
    parts, bad = [], []
    for (model, eps, _), part in groups:
        its = part["n_iter"].tolist()
        for metric, col in (("Acc", "acc"), ("mIoU", "miou")):
            v = part[col].tolist()
            first, last = v[0] - v[1], v[-2] - v[-1]
            if not _le(v[-1], v[0]):
                bad.append(f"{model} {_fmt(eps)} {metric}: {its[-1]} iterations not below {its[0]}")
            if not _le(last, max(first, 0.0)):
                bad.append(f"{model} {_fmt(eps)} {metric}: last gain {last:.1f} > first gain {first:.1f}")
        parts.append(
            f"{model} {_fmt(eps)}: Acc "
            + " → ".join(f"{a:.1f}" for a in part["acc"])
            + " (it "
            + ", ".join(str(i) for i in its)
            + ")"
        )
    why = "; ".join(bad) or "the most iterations are strongest and the last gain is at most the first"
    return _verdict(not bad, "; ".join(parts), why)


def _check_seed_std(ev: Evidence) -> Verdict:
    rows = ev.results
    rows = rows[(rows["attack"] == "sea") & (rows["n_iter"] == ev.n_iter) & (rows["eps_255"] > 0)]
    rows = rows[rows["loss"].isin((*_SEA_LOSSES, _WORST))]
    stds, n_images = [], []
    for _, part in _common_images(rows, ["model", "eps_255"], ["seed"]).groupby(["model", "eps_255", "loss"]):
        if part["seed"].nunique() >= 2:
            stds.append((part["acc"].std(ddof=1), part["miou"].std(ddof=1)))
            n_images.append(part["n_images"].min())
    if not stds:
        return _not_run("no SEA runs with two or more seeds (seed stability chapter)")
    limit = 0.4 * math.sqrt(PAPER_VAL_IMAGES / min(n_images))
    acc, miou = max(s[0] for s in stds), max(s[1] for s in stds)
    ours = f"max std Acc {acc:.2f}, mIoU {miou:.2f} ({len(stds)} settings, {min(n_images)} images)"
    why = (
        f"limit 0.4 x sqrt({PAPER_VAL_IMAGES}/{min(n_images)}) = {limit:.2f}: the paper's 0.4 points on "
        f"{PAPER_VAL_IMAGES} images, scaled to our number of images"
    )
    return _verdict(max(acc, miou) <= limit + _EPS, ours, why)


def _check_loss_pairs(ev: Evidence) -> Verdict:
    rows = ev.main()
    pairs = rows[(rows["attack"] == "sea") & rows["loss"].isin(_PAIRS) & (rows["eps_255"] > 0)]
    if pairs.empty:
        return _not_run("no SEA runs with per-image statistics to recombine into pairs")
    sea = _worst(rows)
    joined = pairs.merge(sea, on=["model", "eps_255"], suffixes=("_p", "_s"))
    weaker = {}
    for pair, part in joined.groupby("loss_p"):
        weaker[pair] = bool(((part["acc_p"] > part["acc_s"] + _EPS) | (part["miou_p"] > part["miou_s"] + _EPS)).any())
    k, n = _count(weaker.values())
    redundant = [p for p, w in weaker.items() if not w]
    why = (
        "every pair is weaker than SEA somewhere" if not redundant else "never weaker than SEA: " + ", ".join(redundant)
    )
    return _verdict(k == n, f"{k}/{n} pairs weaker than SEA at some radius", why)


# ---------------------------------------------------------------------------------------------------------
# Checks: training (Tables 2, 3)


def _check_pirat_beats_at(ev: Evidence) -> Verdict:
    rows = ev.main()
    pairs = _pairs(ev.models, ("at", "pir-at"))
    flags, bad, labels = [], [], []
    for at, pir in pairs:
        cells = _worst(rows)
        a = cells[cells["model"] == at["model"]]
        p = cells[cells["model"] == pir["model"]]
        joined = a.merge(p, on="eps_255", suffixes=("_at", "_pir"))
        if joined.empty:
            continue
        labels.append(_model_label(at))
        for _, r in joined.iterrows():
            for metric in ("acc", "miou"):
                ok = _le(r[f"{metric}_at"], r[f"{metric}_pir"])
                flags.append(ok)
                if not ok:
                    bad.append(
                        f"{_model_label(at)} {_fmt(r['eps_255'])} {metric}: AT {r[f'{metric}_at']:.1f} > "
                        f"PIR-AT {r[f'{metric}_pir']:.1f}"
                    )
    k, n = _count(flags)
    if n == 0:
        return _not_run("no AT / PIR-AT pair with equal steps and epochs evaluated with SEA")
    return _verdict(k == n, f"{k}/{n} cells ({'; '.join(labels)})", "; ".join(bad) or "PIR-AT ≥ AT in every cell")


def _check_at2_collapses(ev: Evidence) -> Verdict:
    rows = ev.main()
    models = ev.models[ev.models["steps"] == 2]
    parts, ok, found = [], True, False
    for arch, group in models.groupby("arch"):
        at = group[group["regime"] == "at"]
        pir = group[group["regime"] == "pir-at"]
        if at.empty or pir.empty:
            continue
        short = at["epochs"].min()
        at_name = at[at["epochs"] == short].iloc[0]["model"]
        same = pir[pir["epochs"] == short]
        if same.empty:
            continue
        a, p = _cell(rows, at_name, ev.eps), _cell(rows, same.iloc[0]["model"], ev.eps)
        if a is None or p is None:
            continue
        found = True
        parts.append(f"{arch}: AT {a['acc']:.1f} / {a['miou']:.1f}, PIR-AT {p['acc']:.1f} / {p['miou']:.1f}")
        ok &= bool(p["miou"] > 0 and a["miou"] <= 0.5 * p["miou"] + _EPS)
    if not found:
        return _not_run(f"no 2-step AT and PIR-AT models of the short budget evaluated at {_fmt(ev.eps)}")
    why = (
        f"SEA Acc / mIoU at {_fmt(ev.eps)}; collapse = the AT model's mIoU at most half of the PIR-AT model's "
        "(and the latter above 0)"
    )
    return _verdict(ok, "; ".join(parts), why)


def _check_pirat_e_vs_at_long(ev: Evidence) -> Verdict:
    rows = ev.main()
    cells = _worst(rows)
    flags, bad, labels = [], [], []
    for (arch, steps), group in ev.models.groupby(["arch", "steps"]):
        pir, at = group[group["regime"] == "pir-at"], group[group["regime"] == "at"]
        if pir.empty or at.empty or at["epochs"].max() <= pir["epochs"].min():
            continue
        p_name = pir[pir["epochs"] == pir["epochs"].min()].iloc[0]["model"]
        a_name = at[at["epochs"] == at["epochs"].max()].iloc[0]["model"]
        joined = cells[cells["model"] == p_name].merge(
            cells[cells["model"] == a_name], on="eps_255", suffixes=("_pir", "_at")
        )
        if joined.empty:
            continue
        ratio = at["epochs"].max() / pir["epochs"].min()
        labels.append(f"{arch} {steps:g} steps, AT {ratio:g}x longer")
        for _, r in joined.iterrows():
            for metric in ("acc", "miou"):
                ok = _le(r[f"{metric}_at"], r[f"{metric}_pir"], MATCH_TOL)
                flags.append(ok)
                if not ok:
                    bad.append(f"{arch} {steps:g} steps {_fmt(r['eps_255'])} {metric}")
    k, n = _count(flags)
    if n == 0:
        return _not_run("no PIR-AT model of the short budget beside an AT model of a longer budget")
    why = "; ".join(bad) or f"PIR-AT with the short budget ≥ long-budget AT − {MATCH_TOL} in every cell"
    return _verdict(k == n, f"{k}/{n} cells ({'; '.join(labels)})", why)


def _check_clean_not_robust(ev: Evidence) -> Verdict:
    rows = ev.main()
    cells = _worst(rows)
    parts, ok, found = [], True, False
    for _, clean in ev.models[ev.models["regime"] == "clean"].iterrows():
        c = cells[cells["model"] == clean["model"]]
        robust = ev.models[(ev.models["regime"] == "pir-at") & (ev.models["arch"] == clean["arch"])]
        if c.empty or robust.empty:
            continue
        rc = c["eps_255"].max()
        r = cells[cells["model"].isin(robust["model"]) & (cells["eps_255"] >= rc)]
        if r.empty:
            continue
        r = r[r["eps_255"] == r["eps_255"].min()]
        best = r.loc[r["acc"].idxmin()]
        acc_c = c[c["eps_255"] == rc]["acc"].iloc[0]
        found = True
        parts.append(
            f"{clean['model']} at {_fmt(rc)}: {acc_c:.1f}; {best['model']} at {_fmt(best['eps_255'])}: "
            f"{best['acc']:.1f}"
        )
        ok &= bool(acc_c <= 0.5 * best["acc"] + _EPS)
    if not found:
        return _not_run("no clean model and PIR-AT model of one architecture evaluated with SEA")
    why = (
        "SEA Acc; pass: the clean model at its largest radius keeps at most half of what a PIR-AT model keeps at "
        "a radius at least as large"
    )
    return _verdict(ok, "; ".join(parts), why)


# ---------------------------------------------------------------------------------------------------------
# Checks: transfer, targeted, benchmarks


def _transfer_rows(ev: Evidence) -> pd.DataFrame:
    rows = ev.main()
    out = rows[rows["attack"].str.startswith("transfer:") & (rows["loss"] == _WORST) & (rows["eps_255"] > 0)]
    return out.assign(source=out["attack"].str.removeprefix("transfer:"))


def _check_transfer_weaker(ev: Evidence) -> Verdict:
    transfer = _transfer_rows(ev)
    sea = _worst(ev.main())
    joined = transfer.merge(sea, on=["model", "eps_255"], suffixes=("_t", "_s"))
    if joined.empty:
        return _not_run("no transfer attack beside a white-box SEA run of the same model (transfer chapter)")
    flags = [_le(r[f"{m}_s"], r[f"{m}_t"]) for _, r in joined.iterrows() for m in ("acc", "miou")]
    k, n = _count(flags)
    gap = (joined["acc_t"] - joined["acc_s"]).mean()
    ours = f"{k}/{n} cells; transfer Acc above SEA by {gap:.1f} points on average"
    return _verdict(k == n, ours, "white-box SEA at most every transfer attack (within 0.1) in every cell")


def _check_transfer_at_source(ev: Evidence) -> Verdict:
    transfer = _transfer_rows(ev)
    regimes = dict(zip(ev.models["model"], ev.models["regime"], strict=True))
    transfer = transfer.assign(regime=transfer["source"].map(regimes))
    at, clean = transfer[transfer["regime"] == "at"], transfer[transfer["regime"] == "clean"]
    joined = at.merge(clean, on=["model", "eps_255"], suffixes=("_at", "_clean"))
    if joined.empty:
        return _not_run("no transfer attacks from both a clean and an AT source model")
    flags = [_le(r[f"{m}_at"], r[f"{m}_clean"]) for _, r in joined.iterrows() for m in ("acc", "miou")]
    k, n = _count(flags)
    return _verdict(k == n, f"{k}/{n} cells", "the AT source's perturbations at most as accurate as the clean one's")


def _check_targeted(ev: Evidence) -> Verdict:
    t = ev.targeted[ev.targeted["eps_255"] == ev.targeted_eps]
    regimes = dict(zip(ev.models["model"], ev.models["regime"], strict=True))
    t = t.assign(regime=t["model"].map(regimes))
    clean, robust = t[t["regime"] == "clean"], t[t["regime"] == "pir-at"]
    joined = clean.merge(robust, on=["target", "eps_255"], suffixes=("_c", "_r"))
    radius = f"{ev.targeted_eps:g}/255"
    if joined.empty:
        return _not_run(f"no targeted attacks at {radius} on both a clean and a PIR-AT model (targeted chapter)")
    parts = [
        f"target {r['target']}: clean {r['fraction_c']:.0f}% (no attack {r['clean_fraction_c']:.0f}%), "
        f"PIR-AT {r['fraction_r']:.0f}%"
        for _, r in joined.iterrows()
    ]
    # A target the clean model already predicts on most pixels (DigitScenes' background) has nothing to flip.
    open_targets = joined[joined["clean_fraction_c"] < 50]
    if open_targets.empty:
        return _not_run(f"only targets the clean model predicts on most pixels without attack ({'; '.join(parts)})")
    ok = all(r["fraction_c"] >= 50 and r["fraction_r"] <= 0.5 * r["fraction_c"] for _, r in open_targets.iterrows())
    why = (
        f"share of pixels predicted as the target at {radius}; pass: clean model >= 50 % and PIR-AT model at most "
        "half of that, for every target the clean model predicts on under 50 % of pixels without attack"
    )
    return _verdict(ok, "; ".join(parts), why)


def _benchmark_verdict(ev: Evidence, name: str) -> Verdict:
    record = ev.benchmarks.get(name)
    if record is None:
        return _not_run(f"no results/benchmarks/{name}.json (run benchmarks/{name}.py --out ...)")
    rows = benchmark_table({name: record})
    if rows.empty:
        return _not_run(f"results/benchmarks/{name}.json holds no measurements")
    ours = "; ".join(f"{r.setting}: {r.ratio:.3f} (target {r.target:.2f})" for r in rows.itertuples())
    return _verdict(bool(rows["met"].all()), ours, BENCHMARK_TARGETS[name])


def _check_apgd_cost(ev: Evidence) -> Verdict:
    return _benchmark_verdict(ev, "bench_apgd_overhead")


def _check_at_cost(ev: Evidence) -> Verdict:
    return _benchmark_verdict(ev, "bench_at_overhead")


def _never(reason: str) -> Callable[[Evidence], Verdict]:
    def check(ev: Evidence) -> Verdict:
        del ev
        return _not_run(reason)

    return check


# ---------------------------------------------------------------------------------------------------------
# The claims


def _table8_text() -> str:
    rows = paper_rows("table8_seeds")
    sea = rows[rows["attack"] == "SEA"]
    return (
        f"std over 3 seeds <= {rows[['acc_std', 'miou_std']].max().max():.1f} for SEA and each loss "
        f"(SEA: Acc {sea['acc_std'].max():.1f}, mIoU {sea['miou_std'].max():.1f}; Table 8)"
    )


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "sea-strongest",
        "SEA's worst case is at most every single attack (its three APGD losses, SegPGD, CosPGD), in Acc and mIoU, "
        "for every model and radius",
        "Table 1, Sec. 3.4",
        _check_sea_below_every_attack,
        flag="one paper cell holds only within rounding: VOC PIR-AT 4/255 mIoU, SEA 64.9 vs SegPGD 64.8 (§16.8)",
    ),
    Claim(
        "sea-beats-baselines",
        "SEA is much stronger than SegPGD and CosPGD (introduction: up to 17.2 Acc / 10.3 mIoU points over SegPGD)",
        "Table 1, Sec. 1, 3.4",
        _check_sea_beats_baselines,
        flag="'more than 17.2 %' in the introduction are maximal gains, not lower bounds (§16.9); CosPGD variant [U]",
    ),
    Claim(
        "mcebal-best-miou",
        "MCE-Bal is the strongest single attack for mIoU in most cases",
        "Sec. 3.4, Table 1",
        _check_mcebal_best_miou,
        flag="text says 15 of 18; Table 1 gives 15 with ties, 13 strict (§16.8)",
    ),
    Claim(
        "mce-best-acc",
        "MCE is the strongest single attack for accuracy in most cases",
        "Sec. 3.4, Table 1",
        _check_mce_best_acc,
        flag="text says 11 of 18; Table 1 gives 10 strict, 12 with ties (§16.8)",
    ),
    Claim(
        "red-eps",
        "Progressive radius reduction (red-ε) beats constant-ε APGD with the same iterations and with 3 restarts, "
        "for (almost) every loss and radius, in Acc and mIoU",
        "Figs. 2, 4, Sec. 3.5",
        _check_red_eps,
        paper="plot only: red-ε lowest in (almost) every case, largest gains at 12/255",
    ),
    Claim(
        "iterations",
        "More SEA iterations help, with diminishing returns (300 → 500 iterations: about 0.1 points)",
        "Fig. 5, App. C.1",
        _check_iterations,
        paper="plot only; text: large gain 50 → 300, ≈0.1 points 300 → 500 at 8/255 and 12/255",
        flag="caption says 8/255 only, text 8/255 and 12/255 (§16.12)",
    ),
    Claim(
        "seed-stability",
        "SEA and its components vary little with the attack's random seed",
        "Table 8",
        _check_seed_std,
        paper=_table8_text,
        flag="Table 8's MCE-Bal 4/255 mIoU mean 69.0 vs 67.4 in Tables 1/6 (§16.5)",
    ),
    Claim(
        "loss-pairs",
        "All three losses are needed: every pair of them gives a weaker worst case than SEA",
        "Table 7",
        _check_loss_pairs,
    ),
    Claim(
        "pirat-beats-at",
        "PIR-AT is more robust than AT at equal cost (same architecture, steps and epochs), at every radius",
        "Tables 2, 3, Sec. 4.2",
        _check_pirat_beats_at,
    ),
    Claim(
        "at2-collapses",
        "2-step AT from a clean backbone with the short budget is not robust, 2-step PIR-AT is",
        "Table 3, Sec. 4.2",
        _check_at2_collapses,
    ),
    Claim(
        "pirat-e-vs-at-long",
        "PIR-AT with the short budget matches or beats AT with a 4-6x longer budget (same steps): 4-6x faster",
        "Table 3, Sec. 4.2",
        _check_pirat_e_vs_at_long,
        flag="Table 2 vs 3: ADE AT 8/255 Acc 24.5 vs 24.6 (§16.6)",
    ),
    Claim(
        "clean-not-robust",
        "A cleanly trained model loses (almost) all accuracy at radii far below those that robust models withstand",
        "Table 1, Figs. 3, 7-10",
        _check_clean_not_robust,
    ),
    Claim(
        "transfer-weaker",
        "Transfer attacks from other models are much weaker than white-box SEA on the PIR-AT model",
        "Table 9",
        _check_transfer_weaker,
        flag="SEA 8/255 mIoU 5.4 in Table 9 vs 5.3 in Tables 2/3 (§16.7)",
    ),
    Claim(
        "transfer-at-source",
        "Perturbations of an adversarially trained source transfer better than those of a clean source",
        "Table 9",
        _check_transfer_at_source,
    ),
    Claim(
        "targeted",
        "A targeted attack at a small radius (2/255) turns a clean model's whole prediction into the target class; "
        "the PIR-AT model is barely affected",
        "Fig. 1, App. D",
        _check_targeted,
        paper="qualitative (no numbers)",
        flag="tracking loss and returned iterate of the targeted attack not stated [U]",
    ),
    Claim(
        "apgd-cost",
        "One APGD iteration costs one forward and one backward pass",
        "ALGORITHMS.md §4.6 [D]",
        _check_apgd_cost,
        paper="N iterations = N backward passes (derived); target: <= 1.10 x a bare forward+backward",
    ),
    Claim(
        "at-cost",
        "k-step AT costs (k+1) x clean training",
        "Sec. 4, App. B.2",
        _check_at_cost,
        paper="(k+1) x (stated); target: <= 1.05 (k+1) x a clean training iteration",
    ),
    Claim(
        "other-defences",
        "DDC-AT, its AT model and SegPGD-AT have (almost) no robustness under SEA",
        "Tables 1, 2",
        _never("models of other papers (PSPNet); not in the zoo"),
        paper="DDC-AT and AT (Xu et al.): 0.0 Acc / 0.0 mIoU at 4/255 (Table 2)",
    ),
    Claim(
        "alma-prox",
        "SEA and APGD beat ALMA prox on the robust model (ALMA prox still at 77 % at 32/255)",
        "Fig. 6, App. C.3",
        _never("ALMA prox is not implemented in robseg_lib"),
        paper="APGD 0 % vs ALMA prox 77 % at 32/255 (robust model)",
    ),
    Claim(
        "background-class",
        "Training with or without the background class changes clean and robust numbers little",
        "App. C.2",
        _never("needs ADE20K with and without its 'other' class"),
        paper="clean 80.4 / 43.8 (150 classes) vs 80.2 / 43.8 (151)",
    ),
)
"""Every claim of the paper that the book checks (or states why it cannot)."""


# ---------------------------------------------------------------------------------------------------------
# Evidence from our results


_SETTINGS = re.compile(r"eps(?P<eps>[0-9.e+-]+)_it(?P<it>\d+)_img(?P<img>\d+)_bs(?P<bs>\d+)_seed(?P<seed>\d+)_.+")
_TARGETED = re.compile(
    r"eps(?P<eps>[0-9.e+-]+)_it(?P<it>\d+)_img(?P<img>\d+)_seed(?P<seed>\d+)_target(?P<target>\d+)_(?P<key>\w+)\.pt"
)


def _attack_of(slug: str) -> str | None:
    """The attack spec of a results folder name (``apgd-restarts_mce_3`` -> ``apgd-restarts:mce:3``)."""
    if slug.startswith(TRANSFER_PREFIX):
        return "transfer:" + slug.removeprefix(TRANSFER_PREFIX)
    try:
        return experiments.parse_attack(slug.replace("_", ":")).name
    except ValueError:
        return None


def _result_rows(result: EvaluationResult, keys: Mapping[str, Any], pairs: bool) -> list[dict[str, Any]]:
    """Rows of one result: clean, each attack, the worst case and, with ``pairs``, SEA's loss pairs."""
    sea = result.sea
    numbers = {"clean": (sea.clean_acc, sea.clean_miou), **sea.per_attack, _WORST: (sea.worst_acc, sea.worst_miou)}
    rows = [
        {**keys, "loss": loss, "acc": 100 * acc, "miou": 100 * miou} | ({"eps_255": 0.0} if loss == "clean" else {})
        for loss, (acc, miou) in numbers.items()
    ]
    if pairs:
        subsets = experiments.loss_subsets(result)
        rows += [
            {**keys, "loss": r.attacks, "acc": r.acc, "miou": r.miou}
            for r in subsets.itertuples()
            if r.attacks != "SEA"
        ]
    return rows


def _run_rows(folder: Path, attack: str, match: re.Match[str], counts: Iterable[int]) -> list[dict[str, Any]]:
    """Rows of a finished run, and of its first n images for each smaller image count n of ``counts`` that is a
    whole number of its batches: what :func:`robseg_lib.experiments.run` returns for such a request."""
    n_images, batch = int(match["img"]), int(match["bs"])
    keys = {
        "model": folder.parent.name,
        "attack": attack,
        "eps_255": float(match["eps"]),
        "n_iter": int(match["it"]),
        "seed": int(match["seed"]),
        "n_images": n_images,
    }
    result = load_results(folder)
    pairs = attack == "sea" and len(result.attacks) == 3
    rows = _result_rows(result, keys, pairs)
    for n in sorted(n for n in set(counts) if n < n_images and n % batch == 0):
        rows += _result_rows(experiments._head(result, n), {**keys, "n_images": n}, pairs)
    return rows


def _models_frame(params: ParamSet) -> pd.DataFrame:
    rows = []
    for name, mp in params.models.items():
        train = params.train_for(name) if params.train is not None else None
        family = next((f for f in ("upernet", "segmenter", "pspnet") if f in mp.arch), mp.arch)
        steps = train.attack_steps if train is not None else 0
        epochs = train.epochs if train is not None else 0
        rows.append({"model": name, "arch": family, "regime": mp.regime, "steps": steps, "epochs": epochs})
    return pd.DataFrame(rows, columns=MODEL_COLUMNS)


def benchmark_path(params: ParamSet, name: str) -> Path:
    """``results/benchmarks/<name>.json`` (beside the profiles' results folders)."""
    return profile_results_root(params).parent / "benchmarks" / f"{name}.json"


def collect_evidence(params: ParamSet) -> Evidence:
    """Gather every finished evaluation, targeted attack and benchmark result of a profile (nothing is run).

    Reads every finished run ``results/<profile>/<attack>/<model>/<settings>/`` (one with a ``summary.json``) from
    its per-image statistics: its numbers, the loss pairs of full SEA runs, and its numbers on its first n images
    for every smaller image count n among the profile's runs (in whole batches). A chapter that asks for fewer
    images gets exactly those from :func:`robseg_lib.experiments.run`, which writes no folder for them; with them,
    :meth:`Evidence.main` compares all attacks on the same images. Also reads the targeted-attack files of models
    whose zoo key is current (at the main iterations and seed), and ``results/benchmarks/*.json``. Results of a
    model that was retrained since are not detected here; the chapters' runs refuse them
    (:class:`robseg_lib.evaluate.RunMismatchError`).
    """
    root = profile_results_root(params)
    runs = []
    for summary in sorted(root.glob("*/*/*/summary.json")):
        folder = summary.parent
        attack, match = _attack_of(folder.parent.parent.name), _SETTINGS.fullmatch(folder.name)
        if attack is not None and match is not None:
            runs.append((folder, attack, match))
    counts = {int(match["img"]) for _, _, match in runs}
    rows = [row for folder, attack, match in runs for row in _run_rows(folder, attack, match, counts)]
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    files = []
    for path in root.glob("targeted/*/*.pt"):
        match = _TARGETED.fullmatch(path.name)
        model = path.parent.name
        if match is None or model not in params.models or match["key"] != zoo.model_key(params, model):
            continue
        if (int(match["it"]), int(match["seed"])) == (params.eval.n_iter, params.eval.seed):
            files.append((int(match["img"]), path, match))
    targeted = []
    for _, path, match in sorted(files):  # fewest images first: of several image counts the largest is kept
        model = path.parent.name
        record = torch.load(path, weights_only=True)
        target = int(match["target"])
        targeted.append(
            {
                "model": model,
                "target": target,
                "eps_255": float(match["eps"]),
                "fraction": 100 * float((record["adv_pred"].long() == target).double().mean()),
                "clean_fraction": 100 * float((record["clean_pred"].long() == target).double().mean()),
            }
        )
    targeted_frame = pd.DataFrame(targeted, columns=TARGETED_COLUMNS)
    targeted_frame = targeted_frame.drop_duplicates(["model", "target", "eps_255"], keep="last")
    benchmarks = load_benchmarks(params, BENCHMARK_TARGETS)
    return Evidence(
        results=results,
        models=_models_frame(params),
        n_iter=params.eval.n_iter,
        seed=params.eval.seed,
        eps=float(params.eval.eps),
        targeted_eps=float(params.eval.targeted_eps),
        targeted=targeted_frame.reset_index(drop=True),
        benchmarks=benchmarks,
        label=params.profile,
    )


def load_benchmarks(params: ParamSet, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stored JSON records of the named benchmarks (:func:`benchmark_path`); those not run are left out."""
    paths = {name: benchmark_path(params, name) for name in names}
    return {name: json.loads(path.read_text()) for name, path in paths.items() if path.is_file()}


def benchmark_timings(record: Mapping[str, Any]) -> pd.DataFrame:
    """The ``*_ms`` entries of one benchmark record, one row per setting (index ``setting``), rounded to 0.1 ms."""
    rows = []
    for item in record["results"]:
        times = {key.removesuffix("_ms").replace("_", " "): value for key, value in item.items() if key.endswith("_ms")}
        rows.append({"setting": item["setting"], **times})
    return pd.DataFrame(rows).set_index("setting").round(1)


def benchmark_table(benchmarks: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per measured setting of the benchmark files: ``benchmark, setting, ratio, target, met``.

    A file holds ``{"results": [{"setting": str, "ratio": float, "target": float}, ...], ...}``; a missing target
    fails loudly rather than passing silently.
    """
    rows = []
    for name, record in benchmarks.items():
        for item in record.get("results", []):
            if "target" not in item or "ratio" not in item:
                raise ValueError(f"benchmark {name}: every result needs 'ratio' and 'target', got {item}")
            rows.append(
                {
                    "benchmark": name,
                    "setting": str(item.get("setting", "")),
                    "ratio": float(item["ratio"]),
                    "target": float(item["target"]),
                    "met": float(item["ratio"]) <= float(item["target"]) + _EPS,
                }
            )
    return pd.DataFrame(rows, columns=["benchmark", "setting", "ratio", "target", "met"])


def benchmark_summary(records: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The cost ratios of the performance page, indexed by ``(benchmark, setting)``: claim, ratio, target and
    ``met`` / ``not met``, with one ``not run`` row for each benchmark of :data:`BENCHMARK_TARGETS` without a record.
    """
    measured = benchmark_table({name: records[name] for name in BENCHMARK_TARGETS if name in records})
    rows = [
        {
            "benchmark": r.benchmark,
            "setting": r.setting,
            "claim": BENCHMARK_TARGETS[r.benchmark],
            "ratio": round(r.ratio, 3),
            "target": r.target,
            "met": "met" if r.met else "not met",
        }
        for r in measured.itertuples()
    ]
    rows += [
        {"benchmark": name, "setting": "-", "claim": claim, "ratio": "-", "target": "-", "met": "not run"}
        for name, claim in BENCHMARK_TARGETS.items()
        if name not in records
    ]
    return pd.DataFrame(rows).set_index(["benchmark", "setting"])


def benchmark_machines(records: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Where and how each benchmark ran (date, machine facts, clock, malloc pinning): one column per record."""
    machines = {
        name: {
            "date": record["date"],
            **record["machine"],
            "clock": record["options"].get("clock", "-"),
            "malloc pinned": record["options"].get("malloc_pinned", "-"),
        }
        for name, record in records.items()
    }
    return pd.DataFrame(machines).fillna("-")


def model_step_times(record: Mapping[str, Any]) -> pd.DataFrame:
    """Parameters (M) and training-step / evaluation-forward times (ms) per model of a ``bench_models`` record."""
    columns = {
        "params_m": "params (M)",
        "train_median_ms": "train step, median",
        "train_min_ms": "train step, min",
        "eval_median_ms": "eval forward, median",
        "eval_min_ms": "eval forward, min",
    }
    frame = pd.DataFrame(record["results"]).set_index("model")[list(columns)]
    return frame.rename(columns=columns).round(2)


# ---------------------------------------------------------------------------------------------------------
# Evidence from the paper's tables

_REGIMES = {"clean": "clean", "AT": "at", "PIR-AT": "pir-at", "DDC-AT": "ddc-at"}
_PAPER_LOSSES = {"JS": "js", "MCE": "mce", "MCE-Bal": "mce-bal", "SEA": _WORST, "none": "clean"}
_PAPER_BASELINES = {"SegPGD": "pgd:segpgd", "CosPGD": "pgd:cospgd-sigmoid"}


def _paper_model(row: Mapping[str, Any]) -> dict[str, Any]:
    steps = 0 if pd.isna(row.get("train_attack_steps")) else float(row["train_attack_steps"])
    epochs = 0 if pd.isna(row.get("epochs")) else float(row["epochs"])
    name = f"{row['dataset']} {row['architecture']} {row['backbone']} {row['training']} {steps:g}s {epochs:g}ep"
    regime = _REGIMES.get(str(row["training"]), str(row["training"]))
    arch = f"{row['dataset']} {row['architecture']} {row['backbone']}"
    return {"model": name, "arch": arch, "regime": regime, "steps": steps, "epochs": epochs}


def paper_evidence() -> Evidence:
    """The paper's Tables 1, 2, 3, 7 and 9 as :class:`Evidence` (300 iterations, seed 0, main radius 4/255).

    Table 1's CosPGD is recorded as ``pgd:cospgd-sigmoid`` (the variant the paper describes, [U]); Table 9's
    source models are the clean and the AT Segmenter of ADE20K.
    """
    models: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []

    def add(model: dict[str, Any], attack: str, eps: float, loss: str, acc: float, miou: float) -> None:
        models.setdefault(model["model"], model)
        if not (pd.isna(acc) or pd.isna(miou)):
            rows.append(
                {
                    "model": model["model"],
                    "attack": attack,
                    "eps_255": float(eps),
                    "n_iter": 300,
                    "seed": 0,
                    "n_images": 0,
                    "loss": loss,
                    "acc": float(acc),
                    "miou": float(miou),
                }
            )

    for r in paper_rows("table1_attacks").to_dict("records"):
        m = _paper_model(r)
        add(m, "sea", 0, "clean", r["clean_acc"], r["clean_miou"])
        if r["attack"] in _PAPER_BASELINES:
            add(m, _PAPER_BASELINES[r["attack"]], r["eps_255"], _WORST, r["acc"], r["miou"])
        else:
            add(m, "sea", r["eps_255"], _PAPER_LOSSES[r["attack"]], r["acc"], r["miou"])
    for table in ("table3_at_vs_pirat", "table2_robust_models"):
        for r in paper_rows(table).to_dict("records"):
            add(_paper_model(r), "sea", r["eps_255"], _PAPER_LOSSES[r["attack"]], r["acc"], r["miou"])
    for r in paper_rows("table7_loss_pairs").to_dict("records"):
        if r["attacks"] in _PAIRS:
            add(_paper_model(r), "sea", r["eps_255"], r["attacks"], r["acc"], r["miou"])
    base = {"dataset": "ADE20K", "architecture": "Segmenter", "backbone": "ViT-S"}
    target = _paper_model({**base, "training": "PIR-AT", "train_attack_steps": 5, "epochs": 128})
    sources = {
        "clean training (Segmenter ViT-S)": _paper_model({**base, "training": "clean"}),
        "AT 5 steps (Segmenter ViT-S)": _paper_model(
            {**base, "training": "AT", "train_attack_steps": 5, "epochs": 128}
        ),
    }
    for r in paper_rows("table9_transfer").to_dict("records"):
        if r["source_model"] in sources and r["eps_255"] > 0:
            source = sources[r["source_model"]]
            models.setdefault(source["model"], source)
            add(target, f"transfer:{source['model']}", r["eps_255"], _WORST, r["acc"], r["miou"])
    results = pd.DataFrame(rows, columns=RESULT_COLUMNS).drop_duplicates(
        ["model", "attack", "eps_255", "loss"], keep="first"
    )
    return Evidence(
        results=results.reset_index(drop=True),
        models=pd.DataFrame(list(models.values()), columns=MODEL_COLUMNS),
        n_iter=300,
        seed=0,
        eps=4.0,
        label="paper",
    )


# ---------------------------------------------------------------------------------------------------------
# Reports


def status_table(evidence: Evidence, claims: Sequence[Claim] = CLAIMS, paper: Evidence | None = None) -> pd.DataFrame:
    """One row per claim: ``claim, statement, source, paper, ours, status, explanation`` (indexed by claim id).

    The paper column is the claim's check run on ``paper`` (default :func:`paper_evidence`) where it can run,
    else the claim's own text; a flag is appended in brackets.
    """
    paper = paper_evidence() if paper is None else paper
    rows = []
    for claim in claims:
        verdict = claim.check(evidence)
        on_paper = claim.paper_text(paper)
        if claim.flag:
            on_paper = f"{on_paper} [{claim.flag}]"
        rows.append(
            {
                "claim": claim.id,
                "statement": claim.statement,
                "source": claim.source,
                "paper": on_paper,
                "ours": verdict.ours,
                "status": verdict.status,
                "explanation": verdict.explanation,
            }
        )
    return pd.DataFrame(rows).set_index("claim")


def chapter_verdicts(params: ParamSet, ids: Sequence[str]) -> pd.DataFrame:
    """The verdicts of the claims ``ids`` on a profile's results, for the chapter that computes their evidence.

    Columns ``statement, ours, status, explanation`` as on the status page (:func:`status_table`), indexed by claim
    id, so that a chapter shows what its own numbers say about the paper's claim where they are computed.

    Raises:
        ValueError: an unknown claim id.
    """
    known = {c.id: c for c in CLAIMS}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValueError(f"unknown claim(s) {unknown}; valid: {', '.join(known)}")
    table = status_table(collect_evidence(params), [known[i] for i in ids])
    return table[["statement", "ours", "status", "explanation"]]


def paper_cells(evidence: Evidence, params: ParamSet, tolerance: float = MATCH_TOL) -> pd.DataFrame:
    """Each of our SEA numbers (clean and worst case, main settings) beside the paper's, at paper scale.

    Models are matched with :func:`robseg_lib.experiments.paper_counterpart` and the paper's rows read with
    :func:`robseg_lib.experiments.paper_model_rows` (Tables 3, 2); only radii the paper reports appear.

    Returns:
        Columns ``model, eps_255, metric, ours, paper, difference, within`` (``within``: ``|difference| <=
        tolerance``).
    """
    rows = evidence.main()
    rows = rows[(rows["attack"] == "sea") & rows["loss"].isin(("clean", _WORST))]
    out = []
    for model in sorted(set(rows["model"]) & set(params.models)):
        for _, ref in experiments.paper_model_rows(params, [model]).iterrows():
            ours = rows[(rows["model"] == model) & (rows["eps_255"] == float(ref["eps_255"]))]
            ours = ours[ours["loss"] == ("clean" if ref["eps_255"] == 0 else _WORST)]
            if ours.empty:
                continue
            for metric, col in (("Acc", "acc"), ("mIoU", "miou")):
                if pd.isna(ref[col]):
                    continue
                diff = float(ours[col].iloc[0]) - float(ref[col])
                out.append(
                    {
                        "model": model,
                        "eps_255": float(ref["eps_255"]),
                        "metric": metric,
                        "ours": float(ours[col].iloc[0]),
                        "paper": float(ref[col]),
                        "difference": diff,
                        "within": abs(diff) <= tolerance + _EPS,
                    }
                )
    columns = ["model", "eps_255", "metric", "ours", "paper", "difference", "within"]
    return pd.DataFrame(out, columns=columns).round({"ours": 1, "paper": 1, "difference": 1})
