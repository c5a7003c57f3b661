"""Training cost of AT and PIR-AT: the zoo's training logs, Table 3 with costs, the speed-up, cost curves.

The paper (Sec. 4.2, Table 3) compares AT, adversarial training from a clean backbone, with PIR-AT, the same
training from a robust backbone, at 2 and 5 attack steps and at a short (E: 50 PASCAL-VOC epochs) and a long
(6E: 300 epochs) budget: PIR-AT with budget E matches or beats AT with budget 6E, six times faster.

Costs are counted as the zoo logs them (:func:`robseg_lib.engines.zoo.training_log`): ``cost_passes``, forward+backward
passes, iterations x (attack steps + 1), since k attack steps make an iteration k + 1 times as expensive as a
clean one (algorithms §8.2); ``cost_clean_epochs``, the same in epochs of clean training, (k + 1) x epochs,
the unit in which the paper's budgets compare; and ``wall_time_s``, measured, validation included. As in the
paper, the robust backbone that PIR-AT starts from is not counted (robust ImageNet models are reused).

The logs' ``val_robust_miou`` is a cheap proxy (a few APGD iterations on a few validation images, ``train``
settings ``robust_val_iter`` and ``val_images``); SEA's numbers from :func:`robseg_lib.book.experiments.sweep` are the
real ones. Tables and figures show Acc and mIoU in %.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.typing import LineStyleType

from robseg_lib.book.experiments import paper_model_rows, radius_label, side_by_side, wide
from robseg_lib.engines import zoo
from robseg_lib.params import ParamError, ParamSet

__all__ = [
    "PAPER_TABLE",
    "TRAININGS",
    "adversarial_models",
    "budget_label",
    "cost_curves",
    "cost_summary",
    "final_costs",
    "recipes",
    "robustness_vs_cost",
    "speedup_table",
    "table3",
    "training_logs",
    "zoo_wall_times",
]

PAPER_TABLE = "table3_at_vs_pirat"
"""The paper's table of AT and PIR-AT at 2/5 steps and both budgets (UPerNet + ConvNeXt-T)."""

TRAININGS: dict[str, str] = {"clean": "clean", "at": "AT", "pir-at": "PIR-AT"}
"""How a zoo regime reads in tables and legends."""

_COLOURS = {"AT": "tab:blue", "PIR-AT": "tab:red", "clean": "tab:gray"}
_LINESTYLES: tuple[LineStyleType, ...] = ("-", "--", ":", "-.")  # by attack steps, most steps first
_MARKERS = ("o", "s", "^", "D", "v")  # by budget, shortest first
_VAL_COLUMNS = ("val_miou", "val_acc", "val_robust_miou")
_RECIPE = ["arch", "training", "init", "steps", "epochs", "budget"]
_X_AXES = {
    "cost_passes": "training cost (forward+backward passes)",
    "wall_time_s": "training wall time (s)",
    "cost_clean_epochs": "training cost (clean-training epochs)",
}
_Y_AXES = {
    "val_robust_miou": "val. robust mIoU, short APGD (%)",
    "val_miou": "val. clean mIoU (%)",
    "val_acc": "val. clean Acc (%)",
}


def adversarial_models(params: ParamSet, arch: str = "upernet") -> list[str]:
    """The AT and PIR-AT models of a profile whose architecture name contains ``arch``, in ``models.yaml`` order."""
    return [name for name, mp in params.models.items() if mp.regime in ("at", "pir-at") and arch in mp.arch]


def _profile_budget(params: ParamSet) -> int:
    """The profile's training budget E (``train.epochs``)."""
    if params.train is None:
        raise ParamError(f"profile {params.profile!r} has no train section ({params.source})")
    return params.train.epochs


def budget_label(epochs: int, base_epochs: int) -> str:
    """A training budget in units of the profile's budget E (``train.epochs``): ``"E"``, ``"6E"``, ``"1.5E"``."""
    ratio = epochs / base_epochs
    return "E" if ratio == 1 else f"{ratio:g}E"


def recipes(params: ParamSet, names: Sequence[str]) -> pd.DataFrame:
    """One row per model (index ``model``): ``arch``, ``training`` (clean / AT / PIR-AT), backbone ``init``,
    attack ``steps``, ``epochs`` and ``budget`` (:func:`budget_label` of the profile's ``train.epochs``)."""
    rows = []
    for name in names:
        mp, train = params.model(name), params.train_for(name)
        rows.append(
            {
                "model": name,
                "arch": mp.arch,
                "training": TRAININGS[mp.regime],
                "init": mp.init,
                "steps": train.attack_steps,
                "epochs": train.epochs,
                "budget": budget_label(train.epochs, _profile_budget(params)),
            }
        )
    return pd.DataFrame(rows, columns=["model", *_RECIPE]).set_index("model")


def training_logs(params: ParamSet, names: Sequence[str], root: str | Path | None = None) -> pd.DataFrame:
    """The training logs of trained zoo models, one row per logged epoch, with each model's recipe.

    Args:
        params: the profile.
        names: zoo models, trained already (e.g. by :func:`robseg_lib.book.experiments.sweep`).
        root: cache root (default ``$ROBSEG_CACHE`` or ``cache/``).

    Returns:
        Columns ``model``, the :func:`recipes` columns, the log's columns (validation metrics ``val_*`` in %)
        and ``cost_clean_epochs``: ``cost_passes`` in epochs of clean training, (attack steps + 1) x epochs.

    Raises:
        FileNotFoundError: a model that has no training log (not trained yet).
    """
    recipe = recipes(params, names)
    parts = []
    for name in names:
        log = zoo.training_log(params, name, root=root)
        per_epoch = log["iteration"] / log["epoch"]
        log = log.assign(model=name, cost_clean_epochs=log["cost_passes"] / per_epoch)
        log[list(_VAL_COLUMNS)] = 100 * log[list(_VAL_COLUMNS)]
        parts.append(log.join(recipe, on="model"))
    frame = pd.concat(parts, ignore_index=True)
    return frame[["model", *_RECIPE, *[c for c in frame.columns if c not in ("model", *_RECIPE)]]]


def final_costs(logs: pd.DataFrame) -> pd.DataFrame:
    """Each model's last log row (index ``model``, in the order of ``logs``): its recipe, total cost, wall time
    and final validation numbers."""
    last = logs.sort_values("epoch", kind="stable").groupby("model", sort=False).tail(1)
    return last.set_index("model").loc[list(dict.fromkeys(logs["model"]))]


def cost_summary(params: ParamSet, frame: pd.DataFrame, logs: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Per model: recipe, training cost and SEA's worst case at radius ``eps``, with the paper's counterpart.

    Args:
        params: the profile.
        frame: a SEA :func:`robseg_lib.book.experiments.sweep` table of the models, covering radius ``eps``.
        logs: :func:`training_logs` of the same models.
        eps: radius in /255.

    Returns:
        Index ``model`` (order of ``logs``); the recipe columns, ``cost_passes``, ``cost_clean_epochs``,
        ``wall_time_s``, ``acc`` and ``miou`` (SEA, %), and the paper's Table 3 counterpart (NaN without one):
        ``paper_epochs``, ``paper_cost_clean_epochs`` ((steps + 1) x epochs), ``paper_acc`` and ``paper_miou`` at
        the same radius (NaN where the paper has no such radius).

    Raises:
        ValueError: a model without a SEA worst case at ``eps`` in ``frame``.
    """
    final = final_costs(logs)
    names = list(final.index)
    worst = frame[(frame["loss"] == "worst case") & (frame["eps_255"] == eps)].set_index("model")
    missing = [name for name in names if name not in worst.index]
    if missing:
        raise ValueError(f"no SEA worst case at {radius_label(eps)} for {missing} in the sweep table")
    paper = paper_model_rows(params, names, tables=[PAPER_TABLE])
    recipe = paper.drop_duplicates("model").set_index("model").reindex(names, columns=["epochs", "train_attack_steps"])
    at_eps = paper[paper["eps_255"] == eps].set_index("model")
    summary = final[[*_RECIPE, "cost_passes", "cost_clean_epochs", "wall_time_s"]].join(worst[["acc", "miou"]])
    summary["paper_epochs"] = recipe["epochs"].astype(float)
    summary["paper_cost_clean_epochs"] = (recipe["train_attack_steps"] + 1) * summary["paper_epochs"]
    summary["paper_acc"] = at_eps["acc"].reindex(names)
    summary["paper_miou"] = at_eps["miou"].reindex(names)
    return summary


def table3(
    params: ParamSet, frame: pd.DataFrame, logs: pd.DataFrame, labels: tuple[str, str] = ("ours", "paper")
) -> pd.DataFrame:
    """Table 3 for the profile: clean and SEA Acc and mIoU of each model beside its paper counterpart's.

    Args:
        params: the profile.
        frame: a SEA :func:`robseg_lib.book.experiments.sweep` table of the models.
        logs: :func:`training_logs` of the same models.
        labels: top column labels of our numbers and the paper's.

    Returns:
        Rows labelled by model, training, backbone init, attack steps, epochs, budget, cost (passes) and wall
        time (s); columns (label, radius, Acc / mIoU): ours at the sweep's radii, the paper's (Table 3) at its own.
    """
    final = final_costs(logs)
    names = list(final.index)
    sea = frame[frame["loss"].isin(["clean", "worst case"]) & frame["model"].isin(names)]
    ours = wide(sea, index="model", columns="eps_255").reindex(names)
    paper = wide(paper_model_rows(params, names, tables=[PAPER_TABLE]), index="model", columns="eps_255")
    table = side_by_side(ours, paper, labels=labels)
    rows = final[["training", "init", "steps", "epochs", "budget", "cost_passes", "wall_time_s"]].copy()
    rows["cost_passes"] = rows["cost_passes"].astype(int)
    rows["wall_time_s"] = rows["wall_time_s"].round(1)
    rows = rows.rename(columns={"cost_passes": "cost (passes)", "wall_time_s": "wall time (s)"})
    table.index = pd.MultiIndex.from_frame(rows.reset_index())
    return table


def speedup_table(summary: pd.DataFrame, eps: float) -> pd.DataFrame:
    """PIR-AT with budget E against AT with the longest budget, per architecture and number of attack steps.

    Args:
        summary: :func:`cost_summary` at radius ``eps``.
        eps: its radius in /255 (for the column labels).

    Returns:
        Rows (steps, run, model), run e.g. ``"PIR-AT E"`` / ``"AT 6E"``; columns ``"ours"``: cost (passes),
        relative cost, wall time (s), relative wall time, SEA Acc and mIoU at ``eps`` (``"SEA Acc, 4/255"``);
        ``"paper"``: epochs, relative cost, SEA Acc and mIoU at ``eps``. Relative values are divided by those of
        the AT run (the paper's cost: (steps + 1) x epochs).
        Empty if no architecture and step count has both runs.
    """
    sea = [f"SEA Acc, {radius_label(eps)}", f"SEA mIoU, {radius_label(eps)}"]
    ours_cols = ["cost (passes)", "relative cost", "wall time (s)", "relative wall time", *sea]
    paper_cols = ["epochs", "relative cost", *sea]
    columns = pd.MultiIndex.from_tuples([("ours", c) for c in ours_cols] + [("paper", c) for c in paper_cols])
    rows, index = [], []
    for (_, steps), group in summary.groupby(["arch", "steps"], sort=False):
        pir = group[(group["training"] == "PIR-AT") & (group["budget"] == "E")]
        at = group[(group["training"] == "AT") & (group["epochs"] > pir["epochs"].max())]
        if pir.empty or at.empty:
            continue
        pair = pd.concat([pir.iloc[:1], at.loc[[at["epochs"].idxmax()]]])
        reference = pair.iloc[-1]
        for model, row in pair.iterrows():
            index.append((steps, f"{row['training']} {row['budget']}", model))
            rows.append(
                [
                    row["cost_passes"],
                    row["cost_passes"] / reference["cost_passes"],
                    row["wall_time_s"],
                    row["wall_time_s"] / reference["wall_time_s"],
                    row["acc"],
                    row["miou"],
                    row["paper_epochs"],
                    row["paper_cost_clean_epochs"] / reference["paper_cost_clean_epochs"],
                    row["paper_acc"],
                    row["paper_miou"],
                ]
            )
    names = ["steps", "run", "model"]
    table = pd.DataFrame(rows, columns=columns, index=pd.MultiIndex.from_tuples(index, names=names)).astype(float)
    for column in columns:
        table[column] = table[column].round(2 if column[1].startswith("relative") else 1)
    return table.astype({("ours", "cost (passes)"): int})


def _styles(frame: pd.DataFrame) -> tuple[dict[int, LineStyleType], dict[str, str]]:
    """Line style per attack-step count (most steps solid) and marker per budget (shortest first)."""
    steps = sorted(frame["steps"].unique(), reverse=True)
    budgets = frame.drop_duplicates("budget").sort_values("epochs")["budget"]
    linestyles = dict(zip(steps, itertools.cycle(_LINESTYLES), strict=False))
    markers = dict(zip(budgets, itertools.cycle(_MARKERS), strict=False))
    return linestyles, markers


def _recipe_label(row: pd.Series, budget: bool = True) -> str:
    text = row["training"] if row["training"] == "clean" else f"{row['training']}, {row['steps']} steps"
    return f"{text}, {row['budget']}" if budget else text


def cost_curves(
    logs: pd.DataFrame,
    metrics: Sequence[str] = ("val_robust_miou", "val_miou"),
    x_axes: Sequence[str] = ("cost_passes", "wall_time_s"),
    title: str = "",
) -> Figure:
    """Validation numbers of the training logs against training cost: one panel per metric (rows) and x axis
    (columns), one line per model; colour by training (AT / PIR-AT), line style by attack steps, marker by budget.

    Args:
        logs: :func:`training_logs`.
        metrics: log columns on the y axes (in %).
        x_axes: log columns on the x axes: ``cost_passes``, ``wall_time_s`` or ``cost_clean_epochs``.
        title: figure title.
    """
    linestyles, markers = _styles(logs)
    fig, axes = plt.subplots(len(metrics), len(x_axes), figsize=(5.0 * len(x_axes), 3.4 * len(metrics)), squeeze=False)
    for (metric, x), ax in zip(itertools.product(metrics, x_axes), axes.flat, strict=True):
        for _, part in logs.sort_values("epoch").groupby("model", sort=False):
            first = part.iloc[0]
            ax.plot(
                part[x],
                part[metric],
                color=_COLOURS[first["training"]],
                linestyle=linestyles[first["steps"]],
                marker=markers[first["budget"]],
                markersize=4,
                label=f"{_recipe_label(first)} ({first['model']})",
            )
        ax.set_xlabel(_X_AXES[x])
        ax.set_ylabel(_Y_AXES.get(metric, f"{metric} (%)"))
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncols=min(len(names), 3), frameon=False, fontsize="small")
    if title:
        fig.suptitle(title)
    rows = -(-len(names) // 3)
    fig.tight_layout(rect=(0, min(0.04 + 0.045 * rows / len(metrics), 0.4), 1, 1))
    return fig


def _cost_panel(ax: Axes, summary: pd.DataFrame, x: str, y: str, styles: tuple[dict, dict]) -> None:
    """Points of one metric against one cost; runs of the same architecture, training and steps joined in budget
    order."""
    linestyles, markers = styles
    for _, part in summary.sort_values("epochs").groupby(["arch", "training", "steps"], sort=False):
        part = part.dropna(subset=[x, y])
        if part.empty:
            continue
        first = part.iloc[0]
        colour = _COLOURS[first["training"]]
        ax.plot(part[x], part[y], color=colour, linestyle=linestyles[first["steps"]], linewidth=1.0, alpha=0.7)
        for _, row in part.iterrows():
            ax.plot(row[x], row[y], color=colour, marker=markers[row["budget"]], markersize=7, linestyle="none")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)


def _budget_label(summary: pd.DataFrame, budget: str) -> str:
    """``"budget E"``, with the paper's epochs where all runs of that budget have the same counterpart budget."""
    epochs = summary.loc[summary["budget"] == budget, "paper_epochs"].dropna().unique()
    return f"budget {budget}" + (f" (paper: {epochs[0]:g} epochs)" if len(epochs) == 1 else "")


def robustness_vs_cost(summary: pd.DataFrame, eps: float, title: str = "") -> Figure:
    """SEA Acc and mIoU (rows) of the final models against their total training cost: ours (left, in passes)
    and the paper's counterparts (right, in clean-training epochs, (steps + 1) x epochs). Colour by training,
    line style by attack steps (joining the budgets of one recipe), marker by budget.

    Args:
        summary: :func:`cost_summary` at radius ``eps``.
        eps: its radius in /255.
        title: figure title.
    """
    linestyles, markers = _styles(summary)
    fig, axes = plt.subplots(2, 2, figsize=(10.0, 6.8), squeeze=False)
    panels = [
        ("cost_passes", "", "training cost (forward+backward passes)", "ours"),
        ("paper_cost_clean_epochs", "paper_", "training cost (clean-training epochs)", "paper"),
    ]
    for row, (metric, name) in enumerate((("acc", "Acc"), ("miou", "mIoU"))):
        for col, (x, prefix, xlabel, who) in enumerate(panels):
            ax = axes[row, col]
            _cost_panel(ax, summary, x, prefix + metric, (linestyles, markers))
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"SEA {name} at ε = {radius_label(eps)} (%)")
            ax.set_title(f"{who}: SEA {name}")
            if summary[prefix + metric].isna().all():
                ax.text(0.5, 0.5, f"no paper numbers at {radius_label(eps)}", ha="center", transform=ax.transAxes)
    recipes_seen = summary.drop_duplicates(["training", "steps"])
    handles = [
        Line2D([], [], color=_COLOURS[r["training"]], linestyle=linestyles[r["steps"]], label=_recipe_label(r, False))
        for _, r in recipes_seen.iterrows()
    ]
    handles += [
        Line2D([], [], color="black", marker=m, linestyle="none", label=_budget_label(summary, b))
        for b, m in markers.items()
    ]
    fig.legend(handles=handles, loc="lower center", ncols=min(len(handles), 4), frameon=False, fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * (-(-len(handles) // 4)), 1, 1))
    return fig


def zoo_wall_times(params: ParamSet, root: str | Path | None = None) -> pd.DataFrame:
    """What training each zoo model took, from its log (index ``name``; nothing is trained here).

    Columns: regime, attack steps, epochs, ``wall time (s)``, ``cost_passes`` and ``s per cost unit`` (roughly
    equal across regimes when k-step AT costs k + 1 clean iterations); ``not trained`` for a model not in the cache.
    """
    runs = zoo.list_zoo(params, root).set_index("name")
    runs["wall time (s)"] = runs["wall_time_s"].round(1)
    runs["cost_passes"] = runs["cost_passes"].astype("Int64")
    runs["s per cost unit"] = (runs["wall_time_s"] / runs["cost_passes"]).round(3)
    measured = ["wall time (s)", "cost_passes", "s per cost unit"]
    runs = runs[["regime", "attack_steps", "epochs", "cached", *measured]].astype({name: object for name in measured})
    runs.loc[~runs["cached"], measured] = "not trained"
    return runs.drop(columns="cached")
