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
# composed deterministically from the real handwritten digits that ship with scikit-learn: up to four digits per
# image in the cells of a 2x2 grid, scaled, thickened, coloured and placed on smooth textured backgrounds. There
# are 11 classes (background and the ten digits); the anti-aliased border of each digit is left unlabelled
# (white in the label maps), since whether such a pixel belongs to the digit is ambiguous. The digit scans are
# split once, stratified by class, so that no validation digit is ever seen in training. The digits fill the
# scenes so that background does not dominate the labelled pixels: otherwise a model that predicts background
# everywhere keeps a high pixel accuracy under any attack, and accuracy says little.
#
# Its "ImageNet" is digit-or-background classification on crops drawn like pieces of the scenes: the same
# textures, colours, stroke width and digit sizes, at the training crop size. Adversarially trained classifiers
# there provide the robust backbones from which PIR-AT starts.

# %% tags=["parameters"]
profile: str = "tiny"  # parameter profile (params/<profile>/)

# %%
from robseg_lib.params import notebook_setup

ps = notebook_setup(globals()).params

# %%
from myst_nb import glue

from robseg_lib import data
from robseg_lib.book import plots
from robseg_lib.data.digitscenes import CLASS_NAMES

train = data.dataset_from_params(ps.data, "train")
val = data.dataset_from_params(ps.data, "val")

# %% [markdown]
# ## Samples
#
# Validation images (top) and their label maps (bottom).

# %%
fig = plots.sample_grid(val.images[:6], val.labels[:6], CLASS_NAMES, ps.data.ignore_index)

# %% [markdown]
# ## Composition
#
# Share of the pixels of each class (labelled pixels only), and the size of each split.

# %%
summary = data.digitscenes_summary(train, val, ps.data.ignore_index)
glue("digitscenes_val_background", round(summary["class_share"]["val"][0], 1), display=False)
summary["splits"]

# %% [markdown]
# Background makes up {glue:text}`digitscenes_val_background` % of the labelled validation pixels (the regime
# criterion is at most 60 %); each digit class has a few per cent.

# %%
fig = plots.per_class_bars(summary["class_share"], CLASS_NAMES, ylabel="share of labelled pixels (%)")
_ = fig.axes[0].set_title("Class frequencies (share of labelled pixels)")

# %% [markdown]
# ## The pre-training task
#
# Crops at the training crop size, each holding one digit of the scenes' sizes or none (class "background"):
# the digit-or-background classification on which the clean and robust backbones are pre-trained.

# %%
from robseg_lib.data.digitscenes import DigitCrops, scene_digit_sides

crop = ps.pretrain.crop_size if ps.pretrain is not None else ps.data.image_size
crops = DigitCrops("train", 12, crop, scene_digit_sides(ps.data.image_size), seed=ps.data.seed)
fig = plots.crop_grid(crops.images, [CLASS_NAMES[int(t)] for t in crops.targets])
