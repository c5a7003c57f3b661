"""Reports: the status table of every claim, one chapter's verdicts, and paper-scale number-by-number cells."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import pandas as pd

from robseg_lib.book import experiments
from robseg_lib.book.claims._evidence import collect_evidence, paper_evidence
from robseg_lib.book.claims._statements import CLAIMS
from robseg_lib.book.claims._types import _EPS, _WORST, MATCH_TOL, Claim, Evidence
from robseg_lib.engines.evaluate import parse_attack
from robseg_lib.params import ParamSet

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


def chapter_verdicts(
    params: ParamSet,
    ids: Sequence[str],
    frame: pd.DataFrame | None = None,
    attacks: Sequence[str | Sequence[str]] | Mapping[str, str | Sequence[str]] | None = None,
) -> pd.DataFrame:
    """The verdicts of the claims ``ids`` for the chapter that computes their evidence.

    Columns ``statement, ours, status, explanation`` as on the status page (:func:`status_table`), indexed by claim
    id. With the chapter's :func:`robseg_lib.book.experiments.sweep` table ``frame`` and the ``attacks`` it swept,
    the checks read only those runs (same models, radii and image counts, same attack specs): the page then says
    the same whatever other chapters have run before, while the status page reads every run of the profile.

    Raises:
        ValueError: an unknown claim id, or ``frame`` without ``attacks``.
    """
    known = {c.id: c for c in CLAIMS}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValueError(f"unknown claim(s) {unknown}; valid: {', '.join(known)}")
    evidence = collect_evidence(params)
    if frame is not None:
        if attacks is None:
            raise ValueError("chapter_verdicts needs the attacks the chapter swept beside its frame")
        evidence = _restricted(evidence, frame, attacks)
    table = status_table(evidence, [known[i] for i in ids])
    return table[["statement", "ours", "status", "explanation"]]


def _restricted(
    evidence: Evidence,
    frame: pd.DataFrame,
    attacks: Sequence[str | Sequence[str]] | Mapping[str, str | Sequence[str]],
) -> Evidence:
    """``evidence`` with only the result rows of the runs behind a sweep table."""
    groups = attacks.values() if isinstance(attacks, Mapping) else attacks
    specs = {parse_attack(s).name for group in groups for s in ([group] if isinstance(group, str) else group)}
    keys = set(zip(frame["model"], frame["eps_255"].astype(float), frame["n_images"], strict=True))
    r = evidence.results
    rows = zip(r["model"], r["eps_255"].astype(float), r["n_images"], r["attack"], strict=True)
    keep = [(m, e, n) in keys and a in specs for m, e, n, a in rows]
    return dataclasses.replace(evidence, results=r[keep].reset_index(drop=True))


def paper_cells(evidence: Evidence, params: ParamSet, tolerance: float = MATCH_TOL) -> pd.DataFrame:
    """Each of our SEA numbers (clean and worst case, main settings) beside the paper's, at paper scale.

    Models are matched with :func:`robseg_lib.book.experiments.paper_counterpart` and the paper's rows read with
    :func:`robseg_lib.book.experiments.paper_model_rows` (Tables 3, 2); only radii the paper reports appear.

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
