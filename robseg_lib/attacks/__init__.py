"""Attacks: per-pixel losses, APGD with progressive radius reduction, PGD baselines, and SEA."""

from robseg_lib.attacks.apgd import (
    APGDResult,
    APGDRun,
    StagePoint,
    apgd,
    apgd_single_run,
    attack_mode,
    checkpoint_schedule,
    radius_reduction_trace,
    radius_schedule,
    run_apgd,
)
from robseg_lib.attacks.losses import (
    LOSSES,
    TARGETED_LOSSES,
    class_weights_from_counts,
    image_loss,
    label_counts,
    pixel_loss,
    reduce_per_image,
    released_class_weights,
)
from robseg_lib.attacks.pgd import SEA_PAPER_STEP_SIZES, pgd, sea_paper_step_size
from robseg_lib.attacks.sea import SEA_LOSSES, SEAResult, batch_seed, clean_stats, sea, sea_batch

__all__ = [
    "LOSSES",
    "SEA_LOSSES",
    "SEA_PAPER_STEP_SIZES",
    "TARGETED_LOSSES",
    "APGDResult",
    "APGDRun",
    "SEAResult",
    "StagePoint",
    "apgd",
    "apgd_single_run",
    "attack_mode",
    "batch_seed",
    "checkpoint_schedule",
    "class_weights_from_counts",
    "clean_stats",
    "image_loss",
    "label_counts",
    "pgd",
    "pixel_loss",
    "radius_reduction_trace",
    "radius_schedule",
    "reduce_per_image",
    "released_class_weights",
    "run_apgd",
    "sea",
    "sea_batch",
    "sea_paper_step_size",
]
