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
# # SEA evaluation of a segmentation model
#
# The main job of this book: evaluate one model with **SEA**, the Segmentation Ensemble Attack of the paper
# (Sec. 3.6). SEA runs red-ε APGD (300 iterations in the paper, with the radius reduced from 2ε to ε) on three
# losses, each targeting a different failure mode:
#
# - **MCE-Bal** (balanced masked cross-entropy): weights correctly classified pixels by the inverse frequency of
#   their class in the training set, which targets mIoU;
# - **MCE** (masked cross-entropy): only currently correct pixels contribute, which targets pixel accuracy;
# - **JS** (Jensen-Shannon divergence to the one-hot label): bounded, it down-weights pixels that are already
#   confidently wrong.
#
# The worst case is taken **per image**: the lowest pixel accuracy over the three attacks, and, for mIoU, a greedy
# search over one attack per image that minimises the data set's mIoU.
#
# Run it for another radius with `papermill notebooks/sea_eval.ipynb out.ipynb -p eps 8` (eps in /255).

# %% tags=["parameters"]
from typing import Optional

profile: str = "tiny"  # parameter profile (params/<profile>/)
model: Optional[str] = None  # zoo model (params/<profile>/models.yaml); None: the profile's eval.model
eps: Optional[int] = None  # L-inf radius in /255; None: the profile's eval.eps
n_iter: Optional[int] = None  # APGD iterations per loss; None: the profile's
n_images: Optional[int] = None  # validation images; None: the profile's
batch_size: Optional[int] = None  # images per attack batch; None: the profile's
device: Optional[str] = None  # torch device; None: the profile's
seed: Optional[int] = None  # seed of the random starts and of the greedy search; None: the profile's

# %%
from robseg_lib.params import notebook_setup

ps, ev, model_name = notebook_setup(globals())

# %%
from robseg_lib import data
from robseg_lib.book import plots, reporting
from robseg_lib.engines import evaluate, zoo

net = zoo.get_model(ps, model_name, device=ev.device)
settings = {"n_iter": ev.n_iter, "n_images": ev.n_images, "batch_size": ev.batch_size, "seed": ev.seed}
evaluation = evaluate.Evaluation.of(ps, model_name, eps=ev.eps, device=ev.device, **settings)
result = evaluate.run(evaluation, model=net, progress=True)

# %% [markdown]
# ## Robust accuracy and mIoU
#
# Average pixel accuracy (Acc, mean over images) and mIoU (pooled over the data set), in %, without attack, under
# each of SEA's attacks and for SEA's worst case. The paper's columns are its main model, UPerNet with a
# ConvNeXt-T backbone trained with 5-step PIR-AT on PASCAL-VOC (Table 6), at the same radius where the paper
# reports it: a different data set and a much larger model, so compare orderings, not values.

# %%
reference = reporting.paper_main_model(ev.eps)
table = reporting.sea_table(result.table(), reference)
print(
    f"model {model_name} ({ps.model(model_name).description}), eps = {ev.eps}/255, "
    f"{result.n_images} images, {ev.n_iter} iterations per attack"
)
table

# %% [markdown]
# SEA's worst case is never above any single attack, by construction; how much lower it is shows how much the
# attacks complement each other.
#
# ## IoU per class

# %%
ious = result.class_iou_table(data.DigitScenes.class_names if ps.data.name == "digitscenes" else None)
fig = plots.per_class_bars({c: ious[c] for c in ("clean", "worst case")}, list(ious.index))
_ = fig.axes[0].set_title(f"IoU per class, clean and under SEA (eps = {ev.eps}/255)")
# %% [markdown]
# ## A clean and an adversarial prediction
#
# One validation image attacked with red-ε APGD on the masked cross-entropy; the perturbation is magnified to the
# full colour range.

# %%
val = data.dataset_from_params(ps.data, "val")
example = reporting.adversarial_example(
    net, val, index=0, eps=ev.eps / 255, loss="mce", n_iter=ev.n_iter, ignore_index=ps.data.ignore_index, seed=ev.seed
)
_ = plots.prediction_grid(
    [
        ("clean image", example.image, example.clean_pred, example.clean_acc),
        (f"adversarial, eps = {ev.eps}/255", example.adversarial, example.adv_pred, example.adv_acc),
    ],
    example.label,
    val.class_names,
    ps.data.ignore_index,
    clean_image=example.image,
    perturbation_scale=ev.eps / 255,
)
