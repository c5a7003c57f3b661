"""The paper's claims as data: statement, source, the paper's numbers and the check of each."""

from __future__ import annotations

from robseg_lib.book.claims._checks import (
    _check_alma_prox,
    _check_apgd_cost,
    _check_at2_collapses,
    _check_at_cost,
    _check_clean_not_robust,
    _check_iterations,
    _check_loss_pairs,
    _check_mce_best_acc,
    _check_mcebal_best_miou,
    _check_pirat_beats_at,
    _check_pirat_e_vs_at_long,
    _check_red_eps,
    _check_sea_beats_baselines,
    _check_sea_below_every_attack,
    _check_seed_std,
    _check_targeted,
    _check_transfer_at_source,
    _check_transfer_weaker,
    _never,
)
from robseg_lib.book.claims._types import Claim
from robseg_lib.book.reporting import paper_rows

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
        "algorithms §4.6 [D]",
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
        _check_alma_prox,
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
