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
# # Perturbation explorer
#
# How large must an $\ell_\infty$ perturbation be before a segmentation model breaks? Below, a few validation
# images are attacked at radii $\varepsilon \in \{0, 2, 4, 8, 12\}/255$, for a clean model and, when the
# profile has one, a robust (PIR-AT) model. Each panel shows, from left to right:
#
# - the **input** $x + \delta$ (at $\varepsilon = 0$ the clean image);
# - the **perturbation** $\delta$, magnified by $255 / (2\varepsilon)$ around grey so that $\pm\varepsilon$
#   spans the full colour range (its structure, not its size, is what this tile shows);
# - the model's **prediction** at $x + \delta$, with its pixel accuracy over labelled pixels;
# - the **ground truth** (white: unlabelled pixels, ignored by every metric).
#
# Move the slider to change the radius and use the buttons to change the image. Every frame was computed
# when the book was built, and the controls are linked in the browser, so the explorer works in the static
# book without a running kernel. Each radius is a separate APGD run on the masked cross-entropy loss with
# progressive radius reduction: one of the attacks in SEA, not the full ensemble, so the accuracies shown are
# upper bounds on the robust accuracy of these images.

# %% tags=["parameters"]
from typing import Optional

profile: str = "tiny"  # parameter profile (params/<profile>/)
model: Optional[str] = None  # zoo model to explore; None: a clean and a robust model of the profile
n_iter: Optional[int] = None  # APGD iterations per radius; None: the profile's eval.n_iter
seed: Optional[int] = None  # seed of the attack's random start; None: the profile's eval.seed

# %%
from robseg_lib.params import notebook_setup

ps, ev, _ = notebook_setup(globals())

# %%
from robseg_lib import data
from robseg_lib.book import explorer

RADII = (0, 2, 4, 8, 12)  # /255
chosen = explorer.explorer_models(ps, model, device=ev.device)
n_shown = min(3, explorer.MAX_FRAMES // (len(chosen) * len(RADII)))
val = data.dataset_from_params(ps.data, "val")
x, y = val.images[:n_shown], val.labels[:n_shown]
attack = dict(attack="mce", n_iter=ev.n_iter, seed=ev.seed, ignore_index=ps.data.ignore_index)
frames = [explorer.explorer_frames(net, x, y, RADII, title=title, **attack) for title, net in chosen]

# %% [markdown]
# ## The explorer

# %%
explorer.explorer_widget(frames, class_names=val.class_names)
