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
# of the paper's 300). This page scales the paper's range the same way around N: N/10, N/4, N/2, N and 2N
# (5, 12, 25, 50 and 100 on `tiny`, against the paper's 50 to 500 around 300). The radius is the middle one of
# the profile's radii, as the paper's 8/255 is the middle of 4, 8 and 12/255.

# %%
from typing import Optional

from robseg_lib import params as rp

_before = set(globals())

# %% tags=["parameters"]
profile: str = "tiny"  # parameter profile (params/<profile>/)
model: Optional[str] = None  # zoo model; None: the profile's eval.model (the paper's: 5-step PIR-AT UPerNet)
eps: Optional[int] = None  # L-inf radius in /255; None: the middle of the profile's eval.radii
n_iter: Optional[int] = None  # reference iterations N (the grid is N/10, N/4, N/2, N, 2N); None: the profile's
n_images: Optional[int] = None  # validation images; None: half of the profile's, in whole batches
batch_size: Optional[int] = None  # images per attack batch; None: the profile's
device: Optional[str] = None  # torch device; None: the profile's
seed: Optional[int] = None  # seed of the random starts and of the greedy search; None: the profile's

# %%
P = rp.notebook_parameters(
    globals(), _before, declared=("profile", "model", "eps", "n_iter", "n_images", "batch_size", "device", "seed")
)
ps = rp.load_params(profile)
ev = ps.eval_with(n_iter=n_iter, n_images=n_images, batch_size=batch_size, device=device, seed=seed)
model_name = model or ps.default_model()
radius = eps or sorted(ev.radii)[len(ev.radii) // 2]

# %%
import pandas as pd
from myst_nb import glue

from robseg_lib import experiments

images = n_images or experiments.sweep_images(ps)
grid = sorted({max(1, round(ev.n_iter * f)) for f in (0.1, 0.25, 0.5, 1, 2)})
frame = pd.concat(
    experiments.sweep(ps, [model_name], [radius], ["sea"], seeds=[ev.seed], n_iter=n, n_images=images,
                      batch_size=ev.batch_size, device=ev.device)
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
# The same numbers (%). Going from N to 2N iterations still lowers SEA's accuracy and mIoU by the amounts in the
# last two rows' difference (the paper: about 0.1 points from 300 to 500 iterations).

# %%
for n, row in attacked[attacked["name"] == "worst case"].set_index("n_iter").iterrows():
    glue(f"iterations_it{n}_acc", row["acc"], display=False)
    glue(f"iterations_it{n}_miou", row["miou"], display=False)
experiments.wide(attacked, index="n_iter", order=["MCE-Bal", "MCE", "JS", "worst case"]).rename_axis("iterations")
