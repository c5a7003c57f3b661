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
# # Reproduction status
#
# Every claim of the paper that this book checks, in one table: the claim and where the paper makes it, the
# paper's numbers, ours for the profile that was run, and a verdict. As in RobustBench, the claims are stored as
# data (`robseg_lib.book.claims`), each with a check that reads the finished results of the other chapters; this page
# runs no attack itself and comes last in the book.
#
# - **pass**: our results show what the paper claims. Orderings hold within the rounding of the paper's tables
#   (0.1 points), "matches or beats" within 1 point; the explanation says what was compared.
# - **fail**: they do not; the explanation names the cells that break the claim.
# - **not run**: the results the check needs are missing. Either the chapter that computes them was not run for
#   this profile, or not at the profile's main settings (iterations, seed), or the claim is out of reach of this
#   library (models of other papers, ALMA prox); the explanation says which results are missing.
#
# The paper column is the same check run on the paper's own tables where they hold the numbers, so that ours and
# the paper's read alike; otherwise it states the paper's claim in words. Caveats of the paper's numbers (its
# tables disagree in places, {ref}`algorithms §16 <algorithms-16>`) follow in brackets.
#
# At the default scale (`tiny`: DigitScenes and tiny models) the numbers differ from the paper's by design, so
# only orderings are compared. At paper scale (`voc`, `ade20k`) every SEA number is also put beside the paper's.

# %% tags=["parameters"]
profile: str = "tiny"  # parameter profile (params/<profile>/)

# %%
from robseg_lib.params import notebook_setup

ps = notebook_setup(globals()).params

# %%
import pandas as pd
from IPython.display import display

from robseg_lib.book import claims

evidence = claims.collect_evidence(ps)
attacked = evidence.results[evidence.results["eps_255"] > 0]
runs = attacked.drop_duplicates(["model", "attack", "eps_255", "n_iter", "seed"])
print(
    f"profile {ps.profile!r}: {len(runs)} evaluated (model, attack, radius, iterations, seed), "
    f"{runs['model'].nunique()} models; "
    f"{len(evidence.targeted)} targeted attacks, {len(evidence.benchmarks)} benchmark results; "
    f"main settings: {evidence.n_iter} iterations, seed {evidence.seed}, ε = {evidence.eps:g}/255"
)

# %% [markdown]
# ## The claims

# %%
pd.set_option("display.max_colwidth", None)
table = claims.status_table(evidence, paper=claims.paper_evidence())
counts = {status: int((table["status"] == status).sum()) for status in ("pass", "fail", "not run")}
print(", ".join(f"{status}: {n}" for status, n in counts.items()) + f" (of {len(table)} claims)")
table

# %% [markdown]
# ## Our numbers beside the paper's
#
# At paper scale, each of our SEA numbers (clean and worst case at the main settings) beside the paper's for the
# model it reproduces, with the difference in points and whether it lies within 1 point. At DigitScenes scale
# such a comparison says nothing and is left out.

# %%
if ps.data.name == "digitscenes":
    print(f"profile {ps.profile!r} runs on DigitScenes: its numbers are not comparable with the paper's")
else:
    display(claims.paper_cells(evidence, ps))
