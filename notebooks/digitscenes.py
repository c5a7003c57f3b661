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
# # The DigitScenes data set
#
# The default profile replaces PASCAL-VOC and ADE20K by **DigitScenes**, a semantic-segmentation data set
# composed deterministically from the real handwritten digits that ship with scikit-learn: a few digits per
# image, scaled, coloured and placed on smooth textured backgrounds. There are 11 classes (background and
# the ten digits); the anti-aliased border of each digit is left unlabelled (white in the label maps), since
# whether such a pixel belongs to the digit is ambiguous. The digit scans are split once, stratified by
# class, so that no validation digit is ever seen in training.
#
# Its "ImageNet" is digit classification on single-digit crops of the same training digits: adversarially
# trained classifiers there provide the robust backbones from which PIR-AT starts.

# %%
from robseg_lib import params as rp

_before = set(globals())

# %% tags=["parameters"]
profile: str = "tiny"  # parameter profile (params/<profile>/)

# %%
P = rp.notebook_parameters(globals(), _before, declared=("profile",))
ps = rp.load_params(profile)

# %%
from myst_nb import glue

from robseg_lib import data, plots
from robseg_lib.data.digitscenes import CLASS_NAMES

train = data.dataset_from_params(ps.data, "train")
val = data.dataset_from_params(ps.data, "val")

# %% [markdown]
# ## Samples
#
# Validation images (top) and their label maps (bottom).

# %%
fig = plots.sample_grid(val.images[:6], val.labels[:6], CLASS_NAMES, ps.data.ignore_index)
glue("digitscenes_samples", fig, display=False)

# %% [markdown]
# ## Composition
#
# Share of the pixels of each class (labelled pixels only), and the size of each split.

# %%
summary = data.digitscenes_summary(train, val, ps.data.ignore_index)
glue("digitscenes_n_train", len(train), display=False)
glue("digitscenes_n_val", len(val), display=False)
summary["splits"]

# %%
fig = plots.per_class_bars(summary["class_share"], CLASS_NAMES, ylabel="share of labelled pixels (%)")
_ = fig.axes[0].set_title("Class frequencies (background dominates, as on PASCAL-VOC)")
