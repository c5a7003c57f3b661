"""Figures of the book: class colour maps, sample grids, prediction pairs, per-class bars and curves."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch

__all__ = [
    "class_colours",
    "class_legend",
    "colourise",
    "crop_grid",
    "per_class_bars",
    "prediction_grid",
    "sample_grid",
]

_IGNORE_COLOUR = (1.0, 1.0, 1.0)


def class_colours(num_classes: int) -> np.ndarray:
    """(K, 3) distinct RGB colours; class 0 (background) is a neutral grey."""
    base = plt.get_cmap("tab20" if num_classes <= 21 else "gist_ncar")
    steps: np.ndarray | list[float] = (
        np.linspace(0, 1, num_classes - 1, endpoint=num_classes > 21) if num_classes > 1 else []
    )
    colours = [(0.35, 0.35, 0.35)] + [base(s)[:3] for s in steps]
    return np.asarray(colours[:num_classes], dtype=np.float32)


def colourise(label: torch.Tensor | np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """An (H, W) label map as an (H, W, 3) RGB image; ignored pixels are white."""
    label = np.asarray(label)
    colours = class_colours(num_classes)
    out = np.empty((*label.shape, 3), dtype=np.float32)
    valid = (label >= 0) & (label < num_classes) & (label != ignore_index)
    out[valid] = colours[label[valid]]
    out[~valid] = _IGNORE_COLOUR
    return out


def class_legend(fig: Figure, class_names: Sequence[str], ignore: bool = True, **kwargs) -> None:
    """A figure-level legend mapping colours to class names (and white to 'ignored')."""
    colours = class_colours(len(class_names))
    handles = [
        Patch(facecolor=c, edgecolor="black", linewidth=0.3, label=n) for c, n in zip(colours, class_names, strict=True)
    ]
    if ignore:
        handles.append(Patch(facecolor=_IGNORE_COLOUR, edgecolor="black", linewidth=0.3, label="ignored"))
    fig.legend(handles=handles, loc="center right", fontsize="small", frameon=False, **kwargs)


def _image(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy()


def sample_grid(
    images: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str], ignore_index: int = 255, title: str = ""
) -> Figure:
    """Images (top row) above their colour-coded label maps (bottom row)."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n + 1.8, 4.0), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(_image(images[i]))
        axes[1, i].imshow(colourise(labels[i].cpu(), len(class_names), ignore_index), interpolation="nearest")
        for ax in axes[:, i]:
            ax.set_axis_off()
    axes[0, 0].set_title("image", loc="left", fontsize="small")
    axes[1, 0].set_title("label", loc="left", fontsize="small")
    class_legend(fig, class_names)
    fig.subplots_adjust(right=0.82, wspace=0.05, hspace=0.12)
    if title:
        fig.suptitle(title)
    return fig


def crop_grid(images: torch.Tensor, titles: Sequence[str], columns: int = 6) -> Figure:
    """Classification crops in a grid, each titled with its class."""
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, title in zip(axes.flat, images, titles, strict=False):
        ax.imshow(_image(image))
        ax.set_title(title, fontsize="small")
    fig.tight_layout()
    return fig


def prediction_grid(
    rows: Sequence[tuple[str, torch.Tensor, torch.Tensor, float | None]],
    label: torch.Tensor,
    class_names: Sequence[str],
    ignore_index: int = 255,
    clean_image: torch.Tensor | None = None,
    perturbation_scale: float | None = None,
) -> Figure:
    """One row per input (e.g. clean and adversarial): image, optional magnified perturbation, prediction.

    Args:
        rows: (title, image (3,H,W), prediction (H,W), pixel accuracy or None) per row.
        label: the ground truth, shown once in the last column.
        class_names: names of the K classes (for the legend).
        ignore_index: label of unlabelled pixels.
        clean_image: if given, each row also shows ``image - clean_image`` magnified around grey.
        perturbation_scale: eps used to magnify the perturbation to the full colour range.
    """
    show_delta = clean_image is not None and bool(perturbation_scale)
    cols = 3 + int(show_delta)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.3 * cols + 1.8, 2.3 * len(rows)), squeeze=False)
    k = len(class_names)
    for r, (title, image, pred, acc) in enumerate(rows):
        c = 0
        axes[r, c].imshow(_image(image))
        axes[r, c].set_title(title, fontsize="small")
        if clean_image is not None and perturbation_scale:  # show_delta, spelled out for the type checker
            c += 1
            delta = (image - clean_image).detach().cpu() / (2 * perturbation_scale) + 0.5
            axes[r, c].imshow(_image(delta))
            axes[r, c].set_title(f"perturbation (x{0.5 / perturbation_scale:.0f})", fontsize="small")
        c += 1
        axes[r, c].imshow(colourise(pred.cpu(), k, ignore_index), interpolation="nearest")
        axes[r, c].set_title("prediction" + (f", acc {100 * acc:.1f}%" if acc is not None else ""), fontsize="small")
        c += 1
        if r == 0:
            axes[r, c].imshow(colourise(label.cpu(), k, ignore_index), interpolation="nearest")
            axes[r, c].set_title("ground truth", fontsize="small")
        for ax in axes[r]:
            ax.set_axis_off()
    class_legend(fig, class_names)
    fig.subplots_adjust(right=0.8, wspace=0.06, hspace=0.25)
    return fig


def per_class_bars(values: dict[str, Sequence[float]], class_names: Sequence[str], ylabel: str = "IoU (%)") -> Figure:
    """Grouped bars of a per-class quantity (e.g. IoU in %) for several settings (clean, SEA, ...)."""
    n_groups = len(values)
    x = np.arange(len(class_names))
    width = 0.8 / max(n_groups, 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(class_names) * max(1, n_groups / 2)), 3.2))
    for i, (name, vals) in enumerate(values.items()):
        ax.bar(x + (i - (n_groups - 1) / 2) * width, np.nan_to_num(np.asarray(vals, dtype=float)), width, label=name)
    ax.set_xticks(x, class_names, rotation=45, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.legend(frameon=False, fontsize="small", ncols=min(n_groups, 4))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig
