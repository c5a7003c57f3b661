"""Where progressive radius reduction gains or loses: accuracy after each stage and after each projection.

SEA's red-ε APGD (algorithms §5) attacks within 2ε, then 1.5ε, then ε, each stage starting from the previous
stage's output projected onto the smaller ball. :func:`stage_table` follows one such run per loss over a set of
validation images and scores every intermediate point (the random start, each stage's output, each projection),
beside constant-ε APGD from a random start with the same total number of iterations. It uses the seeds that SEA's
runs use (:func:`robseg_lib.attacks.batch_seed`), so its last red-ε row is SEA's per-loss result.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch.utils.data import DataLoader, Subset

from robseg_lib.attacks import apgd, batch_seed, radius_reduction_trace
from robseg_lib.data import dataset_from_params
from robseg_lib.engines import zoo
from robseg_lib.engines.evaluate import SEED_ORDER, profile_run_fields, resolve_class_weights
from robseg_lib.metrics import SegStats, compute_stats
from robseg_lib.params import ParamSet

__all__ = ["CONSTANT", "stage_plot", "stage_table"]

CONSTANT = "constant ε"
"""The label of the constant-radius APGD row."""


def stage_table(
    params: ParamSet,
    model_name: str,
    eps: int,
    n_iter: int,
    *,
    losses: Sequence[str] | None = None,
    n_images: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    device: str | None = None,
) -> pd.DataFrame:
    """Accuracy and mIoU (%) at every point of red-ε APGD, and of constant-ε APGD, per loss.

    Args:
        params: the profile.
        model_name: a zoo model.
        eps: radius in /255.
        n_iter: iterations of both schemes (red-ε splits them 3:3:4 over its stages).
        losses: the attacked losses (default: SEA's, ``eval.losses``).
        n_images, batch_size, seed, device: override ``params.eval``.

    Returns:
        One row per loss and point: ``loss``, ``point`` (``start``, ``stage k``, ``projected k``, or
        :data:`CONSTANT`), ``radius`` (/255), ``acc`` (mean per-image accuracy) and ``miou`` (pooled), both in %.
    """
    ev = params.eval_with(n_iter=n_iter, n_images=n_images, batch_size=batch_size, seed=seed, device=device)
    losses = list(ev.losses if losses is None else losses)
    dataset = dataset_from_params(params.data, "val")
    count = len(dataset) if ev.n_images is None else min(ev.n_images, len(dataset))
    fields = profile_run_fields(params, model_name)
    weights = resolve_class_weights(
        ev.class_weights,
        fields["num_classes"],
        data_params=params.data,
        ignore_index=fields["ignore_index"],
        cache_dir=fields["cache_dir"],
    )
    model = zoo.get_model(params, model_name, device=ev.device, progress=False)
    stats: dict[tuple[str, str, float], list[SegStats]] = {}

    def score(loss: str, point: str, radius: float, x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.no_grad():
            pred = model(x).argmax(1)
        part = compute_stats(pred, y, fields["num_classes"], fields["ignore_index"])
        stats.setdefault((loss, point, radius), []).append(part)

    loader = DataLoader(Subset(dataset, range(count)), batch_size=ev.batch_size, shuffle=False)
    for index, (x, y) in enumerate(loader):
        x, y = x.to(ev.device), y.to(ev.device)
        for loss in losses:
            start = batch_seed(ev.seed, index, SEED_ORDER.index(loss))
            common = {"ignore_index": fields["ignore_index"], "class_weights": weights, "seed": start}
            for p in radius_reduction_trace(model, x, y, eps / 255, loss, n_iter, **common):
                score(loss, p.label, p.radius * 255, p.x, y)
            constant = apgd(model, x, y, eps / 255, loss, n_iter=n_iter, radius_reduction=False, **common)
            score(loss, CONSTANT, float(eps), constant, y)
    rows = [
        {
            "loss": loss,
            "point": point,
            "radius": round(radius, 2),
            "acc": 100 * SegStats.cat(parts).mean_accuracy(),
            "miou": 100 * SegStats.cat(parts).miou(),
        }
        for (loss, point, radius), parts in stats.items()
    ]
    return pd.DataFrame(rows)


def stage_plot(table: pd.DataFrame, title: str = "") -> Figure:
    """Accuracy (top) and mIoU (bottom) along the red-ε points, one line per loss and budget, constant ε dashed.

    Args:
        table: :func:`stage_table` rows, with an ``n_iter`` column when several budgets are shown.
        title: figure title.
    """
    table = table if "n_iter" in table else table.assign(n_iter=0)
    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    colours = dict(zip(table["loss"].unique(), plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for ax, metric, label in zip(axes, ("acc", "miou"), ("accuracy (%)", "mIoU (%)"), strict=True):
        for (budget, loss), part in table.groupby(["n_iter", "loss"], sort=False):
            red = part[part["point"] != CONSTANT]
            style = "-" if budget == table["n_iter"].min() else ":"
            name = f"{loss}, N = {budget}" if budget else loss
            ax.plot(red["point"], red[metric], style, marker="o", color=colours[loss], label=name)
            ax.axhline(part.loc[part["point"] == CONSTANT, metric].iloc[0], color=colours[loss], ls="--", lw=0.8)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, ncol=2, title="red-ε (dashed: constant ε, same N)", title_fontsize=8)
    axes[-1].set_xlabel("point of the red-ε run")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
