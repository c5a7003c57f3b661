"""The checks: each reads an :class:`Evidence` and returns a :class:`Verdict` for one claim."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd

from robseg_lib.book.claims._benchmarks import benchmark_table
from robseg_lib.book.claims._types import (
    _EPS,
    _FAIL,
    _NOT_RUN,
    _PAIRS,
    _PASS,
    _SEA_LOSSES,
    _WORST,
    BENCHMARK_TARGETS,
    MATCH_TOL,
    ORDER_TOL,
    PAPER_VAL_IMAGES,
    Evidence,
    Verdict,
    _common_images,
)

# ---------------------------------------------------------------------------------------------------------
# Helpers over the tidy tables


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
    counts: dict[str, list[bool]] = {"Acc": [], "mIoU": []}
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


_MIN_NORM = "ALMA prox"
_BOUNDED = ("APGD (Mask-CE)", "SEA")


def _check_alma_prox(ev: Evidence) -> Verdict:
    r = ev.robust_images
    regimes = dict(zip(ev.models["model"], ev.models["regime"], strict=True))
    robust = r[r["model"].map(regimes) == "pir-at"]
    with_alma = robust[robust["attack"] == _MIN_NORM]
    if with_alma.empty:
        return _not_run("no ALMA prox results on a PIR-AT model (chapter on minimum-norm attacks)")
    parts, flags = [], []
    for model, rows in robust.groupby("model"):
        eps = rows.loc[rows["attack"] == _MIN_NORM, "eps_255"].max()
        at = rows[rows["eps_255"] == eps].set_index("attack")["robust_images"]
        bounded = [a for a in _BOUNDED if a in at.index]
        flags += [at[a] < at[_MIN_NORM] for a in bounded]
        shown = ", ".join(f"{a} {at[a]:.0f}%" for a in (*bounded, _MIN_NORM))
        parts.append(f"{model} at {_fmt(eps)}: {shown}")
    if not flags:
        return _not_run("ALMA prox results without APGD or SEA at the same radius")
    why = (
        "share of images an attack cannot misclassify on 99 % of their labelled pixels within the radius (lower = "
        "stronger), at the largest radius ALMA prox was compared at; pass: APGD and SEA both below ALMA prox"
    )
    return _verdict(all(flags), "; ".join(parts), why)


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
