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
# # How many iterations does SEA need? (Figure 5)
#
# The paper runs SEA with 50, 100, 200, 300 and 500 iterations per attack on its main model (5-step PIR-AT
# UPerNet + ConvNeXt-T on PASCAL-VOC, ε = 8/255) and picks 300: accuracy and mIoU drop markedly from 50 to 300
# iterations, while 500 iterations lower them by only about 0.1 points more (App. C.1; the curves are given only
# as a plot, so there are no paper numbers to print beside ours).
#
# Our default profile runs SEA with N iterations per attack (the profile's `eval.n_iter`: 50 on `tiny`, a sixth
# of the paper's 300). This page runs SEA from N/10 to 4N iterations (5, 12, 25, 50, 100 and 200 on `tiny`,
# against the paper's 50 to 500 around 300). The radius is the one at which the model is neither intact nor
# broken: of the profile's radii, the one where SEA's worst-case mIoU (at N iterations) is closest to half the
# clean mIoU, as the paper's 8/255 leaves its main model at about half its clean mIoU (Table 2).

# %% tags=["parameters"]
from typing import Optional

profile: str = "tiny"  # parameter profile (params/<profile>/)
model: Optional[str] = None  # zoo model; None: the profile's eval.model (the paper's: 5-step PIR-AT UPerNet)
eps: Optional[int] = None  # L-inf radius in /255; None: the profile's radius where SEA halves the clean mIoU
n_iter: Optional[int] = None  # reference iterations N (the grid is N/10, N/4, N/2, N, 2N, 4N); None: the profile's
n_images: Optional[int] = None  # validation images; None: half of the profile's, in whole batches
batch_size: Optional[int] = None  # images per attack batch; None: the profile's
device: Optional[str] = None  # torch device; None: the profile's
seed: Optional[int] = None  # seed of the random starts and of the greedy search; None: the profile's

# %%
from robseg_lib.params import notebook_setup

ps, ev, model_name = notebook_setup(globals())

# %%
import pandas as pd

from robseg_lib.book import experiments

images = n_images or experiments.sweep_images(ps)
settings = {"n_images": images, "batch_size": ev.batch_size, "device": ev.device}
radius_sweep = experiments.sweep(ps, [model_name], ev.radii, ["sea"], seeds=[ev.seed], n_iter=ev.n_iter, **settings)
radius = eps or experiments.middle_radius(radius_sweep)
print(f"SEA worst case at N = {ev.n_iter} per radius (the radius used here: {experiments.radius_label(radius)}):")
print(
    radius_sweep[radius_sweep["name"].isin(["clean", "worst case"])][["eps_255", "acc", "miou"]]
    .round(1)
    .to_string(index=False)
)
grid = sorted({max(1, round(ev.n_iter * f)) for f in (0.1, 0.25, 0.5, 1, 2, 4)})
frame = pd.concat(
    experiments.sweep(ps, [model_name], [radius], ["sea"], seeds=[ev.seed], n_iter=n, **settings)
    for n in grid
)  # fmt: skip
attacked = frame[frame["loss"] != "clean"]
print(
    f"model {model_name} ({ps.model(model_name).description}); SEA at {experiments.radius_label(radius)} with "
    f"{', '.join(map(str, grid))} iterations per attack on {images} validation images"
)

# %% [markdown]
# ## Accuracy and mIoU against the number of iterations
#
# Each of SEA's attacks and their worst case (SEA) after N iterations; the iteration axis is logarithmic.

# %%
fig = experiments.iteration_curves(attacked, title=f"{model_name}, ε = {experiments.radius_label(radius)}")

# %% [markdown]
# The same numbers (%). The differences between the last rows say what iterations beyond N still buy (the paper:
# about 0.1 points from 300 to 500 iterations).

# %%
experiments.wide(attacked, index="n_iter", order=["MCE-Bal", "MCE", "JS", "worst case"]).rename_axis("iterations")
