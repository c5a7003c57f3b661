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
# # Transfer attacks (Table 9)
#
# Could the robustness of PIR-AT models be an artefact of white-box attacks that fail on them, for instance
# through gradient masking? The paper's Table 9 checks this with transfer attacks: adversarial images computed
# with APGD on the masked cross-entropy (Mask-CE) against a **source** model, a clean-trained and a 5-step AT
# Segmenter + ViT-S on ADE20K, are fed to the **target**, the 5-step PIR-AT Segmenter + ViT-S. Its findings:
#
# - transferred perturbations are **much weaker than the white-box attack**: at the largest radius the target
#   keeps most of its accuracy under the best transfer attack and little under SEA, so there is no sign of
#   gradient masking (which would make a black-box attack the stronger one);
# - perturbations of the **AT source transfer better than those of the clean source**, which barely affect the
#   target.
#
# Here the target is the profile's main PIR-AT model (a UPerNet; `-p model segmenter_pirat5_e` attacks the
# paper's architecture instead). The sources are the clean model and the AT model with the target's
# architecture, attack steps and budget (the roles of the paper's two sources), plus, where the profile has one,
# the PIR-AT model of the other architecture with the same attack steps and budget (a robust source with other
# features, not in the paper). Each source is attacked with red-ε APGD on MCE with the profile's number of
# iterations, at the profile's radii; white-box SEA on the target (and its MCE attack alone, the loss of the
# transfer attacks) is the reference.

# %% tags=["parameters"]
from typing import Optional

profile: str = "tiny"  # parameter profile (params/<profile>/)
model: Optional[str] = None  # target zoo model; None: the profile's eval.model (the paper's: 5-step PIR-AT)
n_iter: Optional[int] = None  # APGD iterations on each source and of each SEA attack; None: the profile's
n_images: Optional[int] = None  # validation images; None: half of the profile's, in whole batches
device: Optional[str] = None  # torch device; None: the profile's
seed: Optional[int] = None  # seed of the random starts and of the greedy search; None: the profile's

# %%
from robseg_lib.params import notebook_setup

ps, ev, target = notebook_setup(globals(), eval_overrides=("n_iter", "device", "seed"))

# %%
import pandas as pd

from robseg_lib.book import experiments, perturbations, reporting

arch, recipe = ps.model(target).arch, ps.train_for(target)
sources = {
    "transfer from clean": experiments.select_models(ps, regime="clean", arch=arch)[0],
    "transfer from AT": experiments.select_models(
        ps, regime="at", arch=arch, attack_steps=recipe.attack_steps, epochs=recipe.epochs
    )[0],
}
twins = experiments.select_models(ps, regime="pir-at", attack_steps=recipe.attack_steps, epochs=recipe.epochs)
other = [m for m in twins if ps.model(m).arch != arch]
sources |= {"transfer from PIR-AT, other architecture": other[0]} if other else {}
images = n_images or experiments.sweep_images(ps)
settings = {"n_iter": ev.n_iter, "n_images": images, "device": ev.device}
white = experiments.sweep(ps, [target], ev.radii, ["sea"], seeds=[ev.seed], batch_size=ev.batch_size, **settings)
transfer = {
    (label, eps): perturbations.transfer_run(ps, source, target, eps=eps, seed=ev.seed, **settings).per_attack["mce"]
    for label, source in sources.items()
    for eps in ev.radii
}
print(f"target {target}: {ps.model(target).description}")
for label, source in sources.items():
    print(f"{label}: {source} ({ps.model(source).description})")
print(f"red-ε APGD, {ev.n_iter} iterations per attack, on {images} validation images (paper: 300, full set)")

# %% [markdown]
# ## Accuracy and mIoU of the target
#
# Ours (%): rows are the radii ("clean": no attack, the same for every column), columns the attacks; the
# transfer columns attack the source and evaluate the target on the source's adversarial images.

# %%
clean = white[white["loss"] == "clean"].iloc[0]
labels = ["white-box SEA", *sources, "white-box MCE"]
rows = [{"attack": label, "eps_255": 0, "acc": clean["acc"], "miou": clean["miou"]} for label in labels]
rows += [
    {"attack": label, "eps_255": eps, "acc": 100 * a, "miou": 100 * m} for (label, eps), (a, m) in transfer.items()
]
attacked = white[white["loss"].isin(["mce", "worst case"])]
whitebox = attacked.assign(attack=attacked["name"].map({"MCE": "white-box MCE", "worst case": "white-box SEA"}))
ours = pd.concat([pd.DataFrame(rows), whitebox[["attack", "eps_255", "acc", "miou"]]], ignore_index=True)
experiments.wide(ours, index="eps_255", columns="attack", order=labels)

# %% [markdown]
# The paper's Table 9 (ADE20K; target: the 5-step PIR-AT Segmenter + ViT-S trained for 128 epochs; sources: the
# clean-trained and the 5-step AT Segmenter + ViT-S):

# %%
paper = reporting.paper_rows("table9_transfer")
is_sea = paper["attack"].str.startswith("SEA")
paper = paper.assign(
    attack=("transfer from " + paper["source_model"].str.split().str[0]).where(~is_sea, "white-box SEA")
)
paper = paper.sort_values("attack", key=lambda column: column.map(labels.index), kind="stable")
experiments.wide(paper, index="eps_255", columns="attack", order=labels[:3])

# %% [markdown]
# ## White-box against transferred
#
# The same numbers as bars, ours (left) and the paper's (right); each radius is a group, lower bars are stronger
# attacks. Our radii are smaller than the paper's (see the tables).

# %%
both = pd.concat({"ours (DigitScenes)": ours, "paper (ADE20K)": paper[ours.columns]}, names=["results", None])
both = both.reset_index(level=0).assign(ε=lambda f: f["eps_255"].map(experiments.radius_label))
fig = experiments.grouped_bars(both, x="ε", hue="attack", panels="results", title=f"Target {target}", xlabel="ε")

# %% [markdown]
# What to look for, as in the paper: every transfer attack leaves the target far more accurate than white-box
# SEA at the same radius, and the AT source's images hurt the target more than the clean source's, which barely
# move it from its clean accuracy. A robust source of the other architecture shows whether robust features
# transfer across architectures too. The target and the sources are small DigitScenes models, so compare the
# ordering of the columns, not the values.
