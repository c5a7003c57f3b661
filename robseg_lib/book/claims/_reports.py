"""Reports: the status table of every claim, one chapter's verdicts, and paper-scale number-by-number cells."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from robseg_lib.book import experiments
from robseg_lib.book.claims._evidence import collect_evidence, paper_evidence
from robseg_lib.book.claims._statements import CLAIMS
from robseg_lib.book.claims._types import _EPS, _WORST, MATCH_TOL, Claim, Evidence
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
