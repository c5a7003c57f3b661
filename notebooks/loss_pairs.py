# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Do SEA's three losses all matter? (Table 7)
#
# The paper's Table 7 replaces SEA's three attacks by each pair of them and finds every pair weaker than the
# full ensemble at 8/255 and 12/255, in accuracy and in mIoU: each loss contributes some images on which it is
# the strongest. At 4/255 pairs containing JS already match SEA.
#
# No attack needs to be rerun for this: SEA stores, for every attack and image, the per-class intersections and
# unions of the prediction on its adversarial image. The worst case over a pair is the per-image minimum of the
# accuracy over the pair and the greedy worst-case mIoU restricted to choosing one of the pair's attacks per
# image, recomputed from those stored statistics (the same SEA runs as the robust-models page).

# %% tags=["parameters"]
from typing import Optional

profile: str = "tiny"  # parameter profile (params/<profile>/)
model: Optional[str] = None  # zoo model; None: the profile's eval.model (the paper's: 5-step PIR-AT UPerNet)
n_iter: Optional[int] = None  # APGD iterations per SEA loss; None: the profile's
n_images: Optional[int] = None  # validation images; None: the profile's
batch_size: Optional[int] = None  # images per attack batch; None: the profile's
device: Optional[str] = None  # torch device; None: the profile's
seed: Optional[int] = None  # seed of the random starts and of the greedy search; None: the profile's

# %%
from robseg_lib.params import notebook_setup

ps, ev, model_name = notebook_setup(globals())
settings = {"n_iter": ev.n_iter, "n_images": ev.n_images, "batch_size": ev.batch_size, "device": ev.device}

# %%
import pandas as pd

from robseg_lib.book import experiments, reporting
from robseg_lib.engines import evaluate

results = {
    eps: evaluate.run(evaluate.Evaluation.of(ps, model_name, eps=eps, seed=ev.seed, **settings)) for eps in ev.radii
}
pairs = pd.concat([experiments.loss_subsets(r).assign(eps_255=eps) for eps, r in results.items()])
print(
    f"model {model_name} ({ps.model(model_name).description}); SEA on {next(iter(results.values())).n_images} "
    f"validation images, {ev.n_iter} iterations per loss (paper: 300 iterations, full PASCAL-VOC validation set)"
)

# %% [markdown]
# ## Pairs against the full ensemble
#
# Worst-case Acc and mIoU (%) over each pair of SEA's attacks and over all three (SEA), ours at the profile's
# radii and the paper's (5-step PIR-AT UPerNet + ConvNeXt-T on PASCAL-VOC) at 4, 8 and 12/255.

# %%
ours = experiments.wide(pairs, index="attacks", columns="eps_255")
paper = reporting.paper_rows("table7_loss_pairs").replace({"attacks": {"SEA (MCE+MCE-Bal+JS)": "SEA"}})
experiments.side_by_side(ours, experiments.wide(paper, index="attacks", columns="eps_255"))

# %% [markdown]
# ## How much each pair misses
#
# Points by which each pair's worst case lies above SEA's (0: the pair is as strong as the full ensemble). A
# pair can never be stronger than SEA: the ensemble's per-image choices include the pair's.

# %%
sea = pairs[pairs["attacks"] == "SEA"].set_index("eps_255")
gaps = pairs[pairs["attacks"] != "SEA"]
gaps = gaps.assign(**{m: gaps[m] - gaps["eps_255"].map(sea[m]) for m in ("acc", "miou")})
experiments.wide(gaps, index="attacks", columns="eps_255")
