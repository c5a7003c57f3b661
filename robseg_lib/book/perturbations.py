"""Single-image perturbations, targeted attacks and transferred perturbations (paper Figs. 1, 3, 7-10, Table 9).

* :func:`radius_sweep` attacks one image at increasing radii (red-ε APGD on Mask-CE, as in Figs. 3 and 7-10);
  :func:`sweep_figure` draws perturbed images, magnified perturbations and predictions; the paper's per-image
  accuracies printed in those figures come from :func:`paper_example_accuracies`.
* :func:`targeted_run` pushes every pixel of a model's prediction towards one class (red-ε APGD maximising
  −JS to the one-hot target, Fig. 1; algorithms §7.3) and reports the fraction of pixels predicted as the
  target; results are cached in ``results/<profile>/targeted/``.
* :func:`transfer_run` evaluates a target model on adversarial images computed on another (source) model
  (Table 9), through the resumable evaluator; results live in ``results/<profile>/transfer_from_<source>/``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from robseg_lib._io import atomic_torch_save
from robseg_lib.attacks import apgd, attack_mode, batch_seed
from robseg_lib.book.plots import class_legend, colourise
from robseg_lib.book.reporting import AdversarialExample, adversarial_example
from robseg_lib.data import LabelledDataset, dataset_from_params
from robseg_lib.engines import evaluate as _evaluate
from robseg_lib.engines import zoo
from robseg_lib.engines.evaluate import EvaluationResult, attack_batch
from robseg_lib.params import ParamSet
from robseg_lib.paths import profile_results_root

__all__ = [
    "TRANSFER_PREFIX",
    "RadiusSweep",
    "TargetedResult",
    "paper_example_accuracies",
    "radius_sweep",
    "sweep_figure",
    "sweep_table",
    "targeted_attack",
    "targeted_figure",
    "targeted_run",
    "transfer_run",
]

TRANSFER_PREFIX = "transfer_from_"
"""Results of :func:`transfer_run` live in ``results/<profile>/transfer_from_<source>/<target>/<settings>``."""

_TARGETED_FORMAT = 1


# ---------------------------------------------------------------------------------------------------------
# Figs. 3, 7-10: one image at increasing radii


@dataclass(frozen=True)
class RadiusSweep:
    """One image attacked at several radii (radius 0: the clean image).

    Attributes:
        title: what the sweep shows (usually the model's name).
        index: the image's index in the validation set.
        radii: radii in /255, increasing.
        examples: one :class:`robseg_lib.book.reporting.AdversarialExample` per radius.
    """

    title: str
    index: int
    radii: tuple[float, ...]
    examples: tuple[AdversarialExample, ...]

    @property
    def accuracies(self) -> list[float]:
        """Pixel accuracy (%) of the prediction at each radius (the clean one at radius 0)."""
        return [100 * (e.clean_acc if r == 0 else e.adv_acc) for r, e in zip(self.radii, self.examples, strict=True)]

    def image(self, i: int) -> torch.Tensor:
        """The input at radius ``radii[i]``."""
        return self.examples[i].image if self.radii[i] == 0 else self.examples[i].adversarial

    def prediction(self, i: int) -> torch.Tensor:
        """The prediction at radius ``radii[i]``."""
        return self.examples[i].clean_pred if self.radii[i] == 0 else self.examples[i].adv_pred


def radius_sweep(
    model: nn.Module,
    dataset: LabelledDataset,
    index: int,
    radii: Sequence[float],
    *,
    title: str = "",
    loss: str = "mce",
    n_iter: int = 100,
    seed: int = 0,
    ignore_index: int = 255,
) -> RadiusSweep:
    """Attack image ``index`` with red-ε APGD on ``loss`` at each radius (in /255; 0 = no attack)."""
    radii = tuple(float(r) for r in radii)
    if not radii or any(b <= a for a, b in itertools.pairwise(radii)) or radii[0] < 0:
        raise ValueError(f"radii must be non-negative and strictly increasing, got {radii}")
    examples = tuple(
        adversarial_example(
            model,
            dataset,
            index,
            eps=r / 255,
            loss=loss,
            n_iter=n_iter if r > 0 else 0,
            seed=seed,
            ignore_index=ignore_index,
        )
        for r in radii
    )
    return RadiusSweep(title, index, radii, examples)


def sweep_figure(sweeps: Sequence[RadiusSweep], class_names: Sequence[str], ignore_index: int = 255) -> Figure:
    """Per sweep three rows over its radii: input, perturbation magnified to the full range, prediction.

    The ground truth is shown once per sweep, at the end of its prediction row.
    """
    cols = max(len(s.radii) for s in sweeps) + 1
    fig, axes = plt.subplots(3 * len(sweeps), cols, figsize=(1.7 * cols + 1.6, 1.8 * 3 * len(sweeps)), squeeze=False)
    k = len(class_names)
    for s, sweep in enumerate(sweeps):
        rows = axes[3 * s : 3 * s + 3]
        clean = sweep.examples[0].image
        for i, radius in enumerate(sweep.radii):
            x = sweep.image(i)
            rows[0, i].imshow(x.permute(1, 2, 0).clamp(0, 1).numpy())
            rows[0, i].set_title(f"ε = {radius:g}/255", fontsize="small")
            delta = (x - clean) / (2 * radius / 255) + 0.5 if radius > 0 else torch.full_like(x, 0.5)
            rows[1, i].imshow(delta.permute(1, 2, 0).clamp(0, 1).numpy())
            rows[2, i].imshow(colourise(sweep.prediction(i), k, ignore_index), interpolation="nearest")
            rows[2, i].set_title(f"acc {sweep.accuracies[i]:.1f}%", fontsize="small")
        rows[2, -1].imshow(colourise(sweep.examples[0].label, k, ignore_index), interpolation="nearest")
        rows[2, -1].set_title("ground truth", fontsize="small")
        rows[0, 0].set_ylabel(f"{sweep.title}\ninput", fontsize="small")
        rows[1, 0].set_ylabel("perturbation\n(magnified)", fontsize="small")
        rows[2, 0].set_ylabel("prediction", fontsize="small")
        for ax in rows.flat:
            ax.set_xticks([])
            ax.set_yticks([])
            if not ax.images:
                ax.set_axis_off()
            else:
                for spine in ax.spines.values():
                    spine.set_visible(False)
    class_legend(fig, class_names)
    fig.subplots_adjust(right=0.8, wspace=0.05, hspace=0.3)
    return fig


def sweep_table(sweeps: Sequence[RadiusSweep]) -> pd.DataFrame:
    """Pixel accuracy (%) per sweep (rows: title, image) and radius (columns ``"0/255"``, ...), 1 decimal."""
    rows = {
        (s.title, f"image {s.index}"): {f"{r:g}/255": a for r, a in zip(s.radii, s.accuracies, strict=True)}
        for s in sweeps
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["model", "image"]
    return table.round(1)


_FIG_HEADER = re.compile(r"^## Fig\. (\d+) — (.*)$")
_FIG_RADII = re.compile(r"ε ∈ \{([^}]*)\}/255")
_FIG_EXAMPLE = re.compile(r"^- Example ([A-Z]): ([0-9.,\s]+?)(?:\s*\(|\.?$)")


def paper_example_accuracies() -> pd.DataFrame:
    """Per-image pixel accuracies (%) the paper prints in Figs. 7-10 (Fig. 3 repeats example A of Figs. 7/8).

    Parsed from the stored transcription ``paper_data/figures.md``.

    Returns:
        Columns ``figure, dataset, model, example, eps_255, acc``.
    """
    text = resources.files("robseg_lib.paper_data").joinpath("figures.md").read_text(encoding="utf-8")
    rows, figure, radii, header = [], None, None, ""
    for line in text.splitlines():
        if match := _FIG_HEADER.match(line):
            figure, header, radii = int(match.group(1)), match.group(2), None
            continue
        if figure not in (7, 8, 9, 10):
            continue
        if (match := _FIG_RADII.search(line)) and radii is None:
            radii = [float(v) for v in match.group(1).split(",")]
        elif match := _FIG_EXAMPLE.match(line):
            values = [float(v) for v in match.group(2).replace(" ", "").strip(",.").split(",")]
            if radii is None or len(values) != len(radii):
                raise ValueError(f"figures.md, Fig. {figure}: {len(values)} accuracies for radii {radii}")
            dataset = "ADE20K" if "ADE20K" in header else "PascalVOC"
            model = "PIR-AT" if "PIR-AT" in header else "clean"
            rows += [
                {
                    "figure": figure,
                    "dataset": dataset,
                    "model": model,
                    "example": match.group(1),
                    "eps_255": r,
                    "acc": a,
                }
                for r, a in zip(radii, values, strict=True)
            ]
    return pd.DataFrame(rows, columns=["figure", "dataset", "model", "example", "eps_255", "acc"])


# ---------------------------------------------------------------------------------------------------------
# Fig. 1: targeted attacks


def targeted_attack(
    model: nn.Module, x: torch.Tensor, target: int, eps: float, *, n_iter: int = 100, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Push every pixel towards class ``target``: red-ε APGD maximising −JS to the one-hot target (Fig. 1).

    No pixel is masked: the label map handed to the attack is the target everywhere, so ignore pixels of the
    data set are attacked as well. The returned iterate is, per image, the one with the most pixels predicted
    as the target (algorithms §7.3, a book choice).

    Args:
        model: segmentation model.
        x: (N, 3, H, W) clean images in [0, 1].
        target: the target class.
        eps: radius in [0, 1] units.
        n_iter: APGD iterations.
        seed: seed of the random start.

    Returns:
        Adversarial images and the (N, H, W) predictions on the clean and the adversarial images.
    """
    device = next(model.parameters()).device
    x = x.to(device)
    y = torch.full((x.shape[0], *x.shape[2:]), target, dtype=torch.long, device=device)
    x_adv = apgd(model, x, y, eps, loss="js", n_iter=n_iter, target=target, seed=seed)
    with torch.no_grad(), attack_mode(model):
        clean_pred = model(x).argmax(1)
        adv_pred = model(x_adv).argmax(1)
    return x_adv, clean_pred, adv_pred


@dataclass(frozen=True)
class TargetedResult:
    """A targeted attack on the first ``n`` validation images of a profile (all on the CPU).

    Attributes:
        model: the zoo model's name.
        target: the target class.
        eps: radius in /255.
        x_adv: (N, 3, H, W) adversarial images.
        clean_pred: (N, H, W) predictions on the clean images.
        adv_pred: (N, H, W) predictions on the adversarial images.
    """

    model: str
    target: int
    eps: float
    x_adv: torch.Tensor
    clean_pred: torch.Tensor
    adv_pred: torch.Tensor

    @property
    def clean_fraction(self) -> float:
        """Share (%) of all pixels predicted as the target without attack."""
        return 100 * float((self.clean_pred == self.target).double().mean())

    @property
    def fraction(self) -> float:
        """Share (%) of all pixels predicted as the target under the attack."""
        return 100 * float((self.adv_pred == self.target).double().mean())


def targeted_run(
    params: ParamSet,
    model_name: str,
    target: int,
    *,
    eps: float = 2,
    n_iter: int | None = None,
    n_images: int = 16,
    seed: int | None = None,
    device: str | None = None,
) -> TargetedResult:
    """:func:`targeted_attack` on the first ``n_images`` validation images, cached per model and settings.

    The cache file ``results/<profile>/targeted/<model>/eps<e>_it<n>_img<n>_seed<s>_target<t>_<model key>.pt``
    is keyed by the zoo key of the model, so a retrained model is attacked again.
    """
    ev = params.eval_with(n_iter=n_iter, seed=seed, device=device)
    if not 0 <= target < params.data.num_classes:
        raise ValueError(f"target must be a class in [0, {params.data.num_classes}), got {target}")
    key = zoo.model_key(params, model_name)
    name = f"eps{eps:g}_it{ev.n_iter}_img{n_images}_seed{ev.seed}_target{target}_{key}.pt"
    path = profile_results_root(params.profile) / "targeted" / model_name / name
    if path.exists():
        record = torch.load(path, weights_only=True)
    else:
        model = zoo.get_model(params, model_name, device=ev.device, progress=False)
        dataset = dataset_from_params(params.data, "val")
        x = torch.stack([dataset[i][0] for i in range(n_images)])
        parts = [
            targeted_attack(
                model, x[i : i + ev.batch_size], target, eps / 255, n_iter=ev.n_iter, seed=batch_seed(ev.seed, b, 0)
            )
            for b, i in enumerate(range(0, n_images, ev.batch_size))
        ]
        record = {
            "format": _TARGETED_FORMAT,
            "x_adv": torch.cat([p[0] for p in parts]).cpu(),
            "clean_pred": torch.cat([p[1] for p in parts]).to(torch.uint8).cpu(),
            "adv_pred": torch.cat([p[2] for p in parts]).to(torch.uint8).cpu(),
        }
        atomic_torch_save(record, path)
    return TargetedResult(
        model_name, target, eps, record["x_adv"], record["clean_pred"].long(), record["adv_pred"].long()
    )


def targeted_figure(
    images: torch.Tensor,
    results: Mapping[str, Sequence[TargetedResult]],
    index: int,
    class_names: Sequence[str],
    ignore_index: int = 255,
) -> Figure:
    """Fig. 1's layout for image ``index``: per model, its prediction without attack and under each target."""
    k = len(class_names)
    cols = 2 + max(len(r) for r in results.values())
    fig, axes = plt.subplots(len(results), cols, figsize=(2.0 * cols + 1.6, 2.1 * len(results)), squeeze=False)
    for row, (title, runs) in zip(axes, results.items(), strict=True):
        row[0].imshow(images[index].permute(1, 2, 0).clamp(0, 1).numpy())
        row[0].set_title("image", fontsize="small")
        row[0].set_ylabel(title, fontsize="small")
        row[1].imshow(colourise(runs[0].clean_pred[index], k, ignore_index), interpolation="nearest")
        row[1].set_title("prediction, no attack", fontsize="small")
        for ax, run in zip(row[2:], runs, strict=False):
            share = 100 * float((run.adv_pred[index] == run.target).double().mean())
            ax.imshow(colourise(run.adv_pred[index], k, ignore_index), interpolation="nearest")
            ax.set_title(f"target '{class_names[run.target]}': {share:.0f}%", fontsize="small")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
            if not ax.images:
                ax.set_axis_off()
    class_legend(fig, class_names)
    fig.subplots_adjust(right=0.8, wspace=0.05, hspace=0.25)
    return fig


# ---------------------------------------------------------------------------------------------------------
# Table 9: transferred perturbations


@dataclass(frozen=True)
class _TransferAttack:
    """Red-ε APGD on each loss against a source model; the evaluator scores the images on its own model.

    The attack (and its seeds) is the one :func:`robseg_lib.engines.evaluate.run` runs for ``apgd:<loss>``. Its
    ``attack_id`` (source name and zoo key) identifies the run in ``run.json``.
    """

    name: str
    key: str
    model: nn.Module

    @property
    def attack_id(self) -> str:
        return f"transfer:{self.name} key={self.key}"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, **attack: Any) -> dict[str, torch.Tensor]:
        del model
        return attack_batch(self.model, x, y, method="red", **attack)


def transfer_run(
    params: ParamSet,
    source: str,
    target: str,
    *,
    eps: float,
    loss: str = "mce",
    n_iter: int | None = None,
    n_images: int | None = None,
    seed: int | None = None,
    device: str | None = None,
) -> EvaluationResult:
    """Evaluate zoo model ``target`` on red-ε APGD (``loss``) images computed on zoo model ``source`` (Table 9).

    Cached and resumable like every evaluation (:func:`robseg_lib.engines.evaluate.evaluate`); the source model's
    parameter fingerprint is part of the run's identity.
    """
    ev = params.eval_with(n_iter=n_iter, seed=seed, n_images=n_images, device=device)
    dataset = dataset_from_params(params.data, "val")
    n = len(dataset) if ev.n_images is None else ev.n_images
    source_model = zoo.get_model(params, source, device=ev.device, progress=False)
    key = zoo.model_key(params, source)
    attack = _TransferAttack(f"{params.profile}/{source}", key, source_model)
    slug = f"{TRANSFER_PREFIX}{source}"
    out_dir = _evaluate.default_out_dir(
        params.profile, target, eps, ev.n_iter, n, ev.batch_size, ev.seed, ev.class_weights, slug=slug
    )
    return _evaluate.evaluate(
        zoo.get_model(params, target, device=ev.device, progress=False),
        dataset,
        out_dir,
        eps / 255,
        attack=attack,
        n_iter=ev.n_iter,
        batch_size=ev.batch_size,
        n_images=n,
        class_weights=ev.class_weights,
        seed=ev.seed,
        device=ev.device,
        progress=False,
        losses=(loss,),
        **_evaluate.profile_run_fields(params, target),
    )
