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
# # Adversarial images at increasing radii (Figures 3 and 7-10)
#
# The paper shows what its attacks do to single images (Sec. 4.1, App. D): a validation image is attacked with
# red-ε APGD on the masked cross-entropy (Mask-CE, 300 iterations) at increasing radii, and each panel gives the
# perturbed image, the predicted mask and the image's pixel accuracy. Figures 7 (PASCAL-VOC) and 9 (ADE20K)
# attack a clean-trained UPerNet + ConvNeXt-T at ε = 0.25, 0.5, 1 and 2/255; Figures 8 and 10 the 5-step PIR-AT
# version of the same model at ε = 4, 8, 12 and 16/255; Figure 3 repeats the first example of Figures 7 and 8.
# Its observations:
#
# - the **clean model collapses at tiny radii**: imperceptible perturbations of 0.5/255 already cost many
#   pixels, by 1/255 at most half of them are still correct, and at 2/255 none;
# - the **PIR-AT model degrades gracefully**: it keeps nearly all of its accuracy at 4/255 (on PASCAL-VOC most
#   of it up to 8/255) and fails only at 12 to 16/255, three to four times its training radius of 4/255;
# - at those large radii the **perturbations of the robust model are visible and look like semantic edits**:
#   they paint shapes of the classes the model then predicts, rather than high-frequency noise.
#
# Here a clean model and the profile's main PIR-AT model (the same architecture) attack the first validation
# images in the same way, with the profile's number of iterations. The PIR-AT model is attacked at the profile's
# radii and at four times its radius ε (the paper's largest radius, 16/255, is four times its training radius),
# the clean model at one eighth of those radii (on `tiny`: 0.25, 0.5, 1 and 2/255, the paper's radii for its
# clean models). The perturbation rows show δ magnified to the full colour range (grey: δ = 0).

# %% tags=["parameters"]
from typing import Optional

profile: str = "tiny"  # parameter profile (params/<profile>/)
models: Optional[str] = None  # two zoo models (clean, PIR-AT), comma-separated; None: chosen by their recipes
n_iter: Optional[int] = None  # APGD iterations per attack; None: the profile's
n_images: int = 2  # validation images shown per model, the first ones (the paper shows two per model)
device: Optional[str] = None  # torch device; None: the profile's
seed: Optional[int] = None  # seed of the random starts; None: the profile's

# %%
from robseg_lib.params import notebook_setup

ps, ev, _ = notebook_setup(globals(), eval_overrides=("n_iter", "device", "seed"))

# %%
import pandas as pd

from robseg_lib import data
from robseg_lib.book import experiments, perturbations
from robseg_lib.engines import zoo

if models:
    roles = dict(zip(("clean", "PIR-AT"), models.split(","), strict=True))
else:
    main = ps.default_model()
    roles = {"clean": experiments.select_models(ps, regime="clean", arch=ps.model(main).arch)[0], "PIR-AT": main}
robust_radii = sorted({0, *ev.radii, 4 * ev.eps})
radii = {"clean": [r / 8 for r in robust_radii], "PIR-AT": robust_radii}
val = data.dataset_from_params(ps.data, "val")
sweeps = {
    role: [
        perturbations.radius_sweep(
            zoo.get_model(ps, name, device=ev.device, progress=False), val, index, radii[role],
            title=f"{role}: {name}", n_iter=ev.n_iter, seed=ev.seed, ignore_index=ps.data.ignore_index,
        )
        for index in range(n_images)
    ]
    for role, name in roles.items()
}  # fmt: skip
for role, name in roles.items():
    radii_text = ", ".join(experiments.radius_label(r) for r in radii[role][1:])
    print(f"{role:7s} {name} ({ps.model(name).description}): ε = {radii_text}")
print(f"red-ε APGD on MCE, {ev.n_iter} iterations (paper: 300)")

# %% [markdown]
# ## The clean model
#
# The analogue of the paper's Figures 7 and 9: per image, the input (top), the perturbation δ magnified to the
# full colour range (middle) and the prediction with the image's pixel accuracy (bottom), at increasing radii;
# the ground truth ends the prediction row.

# %%
fig = perturbations.sweep_figure(sweeps["clean"], val.class_names, ps.data.ignore_index)
_ = fig.suptitle(f"Clean model {roles['clean']}: red-ε APGD on MCE at small radii")

# %% [markdown]
# Pixel accuracy (%) of each image at each radius (0/255: no attack), ours and the paper's (examples A and B of
# Figures 7 and 9: PASCAL-VOC and ADE20K images, a much larger model). NaN: a radius the row was not attacked
# at. Compare how fast the accuracy falls, not the values.

# %%
paper = perturbations.paper_example_accuracies()
paper = paper.assign(
    role=paper["model"],
    model="Fig. " + paper["figure"].astype(str) + ", " + paper["dataset"],
    image="example " + paper["example"],
    radius=paper["eps_255"].map(lambda r: f"{r:g}/255"),
)
paper_wide = paper.pivot_table(index=["role", "model", "image"], columns="radius", values="acc", sort=False)
theirs = paper_wide.loc["clean"].dropna(axis=1, how="all")
table = pd.concat({"ours (DigitScenes)": perturbations.sweep_table(sweeps["clean"]), "paper": theirs})
table[sorted(table.columns, key=lambda c: float(c.split("/")[0]))].round(1)

# %% [markdown]
# ## The PIR-AT model
#
# The analogue of the paper's Figures 8 and 10, at eight times the clean model's radii.

# %%
fig = perturbations.sweep_figure(sweeps["PIR-AT"], val.class_names, ps.data.ignore_index)
_ = fig.suptitle(f"PIR-AT model {roles['PIR-AT']}: red-ε APGD on MCE up to {4 * ev.eps}/255")

# %% [markdown]
# Pixel accuracy (%) of each image, ours and the paper's (examples A and B of Figures 8 and 10):

# %%
theirs = paper_wide.loc["PIR-AT"].dropna(axis=1, how="all")
table = pd.concat({"ours (DigitScenes)": perturbations.sweep_table(sweeps["PIR-AT"]), "paper": theirs})
table[sorted(table.columns, key=lambda c: float(c.split("/")[0]))].round(1)

# %% [markdown]
# ## What to look for
#
# The pattern of the paper: the clean model loses most of its accuracy at radii that are a fraction of the
# PIR-AT model's, while the PIR-AT model keeps most of its accuracy up to about the profile's radius ε and breaks
# down only at the largest radii. There, look at the perturbation rows: for a robust model the paper finds
# perturbations that change the image's content (shapes of the newly predicted classes, here digit-like strokes
# added or erased) rather than faint high-frequency noise. On DigitScenes the models are small and trained
# briefly, so the numbers differ from the paper's; the ordering is what is compared.
