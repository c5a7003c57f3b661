# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Performance
#
# Two of the paper's cost statements hold only if the implementation adds no hidden overhead:
#
# - **an APGD iteration costs one forward and one backward pass**: SEA's budget is counted in iterations (4 × 300
#   per image in the paper), so the step, the projections, the losses and the per-image bookkeeping must be cheap
#   beside the model. Target: one iteration costs at most 1.10 × a bare forward + backward pass of the same model
#   on the same batch.
# - **k-step adversarial training costs k + 1 clean training iterations**: the paper compares AT and PIR-AT at
#   equal cost with this count, and the training logs' `cost_passes` column uses it. Target: one k-step AT
#   iteration costs at most 1.05 × (k + 1) clean iterations of the same model and batch.
#
# The scripts in `benchmarks/` measure both in one run each: single-threaded process CPU time (which other
# processes disturb far less than the wall clock), glibc's malloc thresholds pinned, and the two sides
# interleaved, with the median over repeats. `make book` runs them when their files in
# `results/benchmarks/` are missing (`--rerun-benchmarks` measures again), at the tiny profile's model and sizes,
# whatever the profile of the book. The paper-scale setting, UPerNet-ConvNeXt-T at 128×128 with batch 2, takes
# minutes on a CPU and is a manual run: `python benchmarks/bench_apgd_overhead.py --settings tiny convnext-t`.

# %% tags=["parameters"]
profile: str = "tiny"  # parameter profile (params/<profile>/)

# %%
from robseg_lib.params import notebook_setup

ps = notebook_setup(globals()).params

# %%
from IPython.display import display

from robseg_lib.book import claims
from robseg_lib.book import training_curves as tc

names = (*claims.BENCHMARK_TARGETS, "bench_models")
records = claims.load_benchmarks(ps, names)
for name in names:
    state = f"measured {records[name]['date']}" if name in records else "not run (make book runs it)"
    print(f"benchmarks/{name}.py: {state}")

# %% [markdown]
# ## Cost ratios
#
# One row per measured setting: the median ratio of the run and its target. A benchmark that has not run is
# listed as such; the reproduction status page reads the same files.

# %%
claims.benchmark_summary(records)

# %% [markdown]
# ## Timings
#
# The medians behind the ratios, in ms: for APGD one bare forward + backward pass and one APGD iteration, for
# adversarial training one k-step AT iteration and k + 1 clean iterations. They are CPU times of one thread: on a
# multi-core machine the wall-clock times of a default (multi-threaded) run are shorter.

# %%
for name in claims.BENCHMARK_TARGETS:
    if name in records:
        print(f"{name}, ms")
        display(claims.benchmark_timings(records[name]))

# %% [markdown]
# ## The machine
#
# Where and how each benchmark ran. Ratios of one machine can differ on another (other CPU, vector units, torch
# build); the machine's load matters less, since both sides of each ratio are measured alike.

# %%
if records:
    display(claims.benchmark_machines(records))
else:
    print("no benchmark has run yet")

# %% [markdown]
# ## Model sizes and step times
#
# Parameters and wall-clock times (ms) of one training step (forward with the auxiliary head, loss, backward)
# and one evaluation forward pass of the tiny models, at the tiny profile's training batch and image size with
# two threads. On a shared machine the minimum is the better estimate.

# %%
if "bench_models" in records:
    options = records["bench_models"]["options"]
    print(f"batch {options['batch']}, {options['size']}x{options['size']}, {options['threads']} threads")
    display(claims.model_step_times(records["bench_models"]))
else:
    print("bench_models has not run: python benchmarks/bench_models.py")

# %% [markdown]
# ## Training wall times of the zoo
#
# What training each model of the profile's zoo took, read from its training log (nothing is trained here; a
# model that is not in the cache is listed as not trained). `cost_passes` counts training iterations in clean
# units, k + 1 per k-step AT iteration; the seconds per cost unit are roughly equal across regimes when that count
# holds. Wall times include validation and are those of the machine that trained the model. The book build and
# `python -m robseg_lib zoo --train all` train the models (and their backbones) side by side, one single-threaded
# process per core, so the zoo takes about the sum of these times divided by the number of cores.

# %%
tc.zoo_wall_times(ps)
