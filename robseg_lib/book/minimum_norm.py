"""Minimum-norm attacks from adv-lib (ALMA prox, DAG) beside SEA: the "robust images" curve of the paper's Fig. 6.

A minimum-norm attack looks for the smallest ℓ∞ perturbation that misclassifies a target fraction of an image's
labelled pixels (99 %, the metric of Rony et al., CVPR 2023). An image counts as *robust at ε* for such an attack
when the attack found no perturbation of norm at most ε that reaches the target; for a bounded attack (APGD, SEA)
when its adversarial image at radius ε keeps more than 1 % of the labelled pixels correct. The curve over ε of the
share of robust images (lower = stronger attack) compares the two kinds of attack on one footing (paper App. C.3).

ALMA prox and DAG are the implementations of the PyPI package ``adv-lib`` (0.2.8), an optional dependency
(``pip install robseg_lib[peers]``): nothing here re-implements them. adv-lib's ALMA prox fails on a batch whose
images disagree on how many pixel constraints they may drop ("index -1 is out of bounds" when one image may drop
none), which happens on small images, so every image is attacked on its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd
import torch
from matplotlib.figure import Figure

from robseg_lib._io import atomic_torch_save, atomic_write
from robseg_lib._progress import progress_bar
from robseg_lib.attacks import attack_mode
from robseg_lib.book.experiments import sweep_images
from robseg_lib.engines import evaluate, zoo
from robseg_lib.engines.evaluate import EvaluationResult
from robseg_lib.metrics import compute_stats
from robseg_lib.params import ParamSet
from robseg_lib.paths import profile_results_root

__all__ = [
    "ADV_THRESHOLD",
    "MINIMUM_NORM_ATTACKS",
    "ROBUST_IMAGES_FILE",
    "MinimumNorms",
    "bounded_robust_share",
    "minimum_norms",
    "norm_table",
    "robust_image_curves",
    "robust_image_figure",
    "robust_image_table",
]

ROBUST_IMAGES_FILE = "minimum_norm/robust_images.csv"
"""Where :func:`robust_image_curves` keeps its table, under ``results/<profile>/`` (the claims read it)."""

ADV_THRESHOLD = 0.99
"""Fraction of an image's labelled pixels an attack must misclassify (Rony et al.; the paper's Fig. 6)."""

MINIMUM_NORM_ATTACKS: dict[str, dict[str, object]] = {
    "alma_prox": {"num_steps": 500},  # adv-lib's defaults otherwise, as the paper ran it (500 iterations)
    "dag": {"max_iter": 200, "γ": 0.5},  # adv-lib's defaults
}
"""The adv-lib attacks this module runs and their settings."""


def _adv_lib_attack(name: str) -> Callable[..., torch.Tensor]:
    try:
        from adv_lib.attacks import segmentation  # optional dependency: robseg_lib[peers]
    except ImportError as err:
        raise ImportError(
            "the minimum-norm attacks need the optional dependency adv-lib (pip install 'robseg_lib[peers]'; "
            "its visdom dependency builds only with setuptools<81 and --no-build-isolation)"
        ) from err
    return getattr(segmentation, name)


@dataclass(frozen=True)
class MinimumNorms:
    """Per-image results of a minimum-norm attack.

    Attributes:
        attack: ``"alma_prox"`` or ``"dag"``.
        model: the zoo model attacked.
        norms: (N,) ℓ∞ norm of the best perturbation that reaches :data:`ADV_THRESHOLD`, ``inf`` where none did.
        fooled: (N,) fraction of labelled pixels misclassified by the returned image.
    """

    attack: str
    model: str
    norms: torch.Tensor
    fooled: torch.Tensor

    def robust_share(self, radii: Sequence[float]) -> list[float]:
        """Share of images (in %) the attack cannot fool to the threshold within each radius (in /255)."""
        return [100 * float((self.norms > r / 255 + 1e-7).double().mean()) for r in radii]


def minimum_norms(
    params: ParamSet, model_name: str, attack: str, n_images: int, *, device: str = "cpu", progress: bool = False
) -> MinimumNorms:
    """Run adv-lib's ``attack`` on each of the first ``n_images`` validation images of zoo model ``model_name``.

    Cached under ``results/<profile>/minimum_norm/<model>/<attack>_img<n>.pt``; the cache is tied to the model's
    zoo key, so a retrained model is attacked again.
    """
    if attack not in MINIMUM_NORM_ATTACKS:
        raise ValueError(f"unknown minimum-norm attack {attack!r}; valid: {', '.join(MINIMUM_NORM_ATTACKS)}")
    key = zoo.model_key(params, model_name)
    path = profile_results_root(params.profile) / "minimum_norm" / model_name / f"{attack}_img{n_images}.pt"
    if path.exists():
        record = torch.load(path, weights_only=True)
        if record["key"] == key:
            return MinimumNorms(attack, model_name, record["norms"], record["fooled"])
    fn = _adv_lib_attack(attack)
    dataset = evaluate.validation_set(params.data)
    if n_images > len(dataset):
        raise ValueError(f"n_images={n_images} but the validation set has {len(dataset)} images")
    model = zoo.get_model(params, model_name, device=device, progress=False)
    # One thread: ALMA prox amplifies the last-bit differences of multi-threaded reductions into different
    # perturbations; on one thread every run finds the same norms.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        norms, fooled = _attack_images(
            functools.partial(fn, adv_threshold=ADV_THRESHOLD, **MINIMUM_NORM_ATTACKS[attack]),
            model,
            [dataset[i][:2] for i in range(n_images)],
            params.data.num_classes,
            params.data.ignore_index,
            device,
            progress and f"{attack} {model_name}",
        )
    finally:
        torch.set_num_threads(threads)
    atomic_torch_save({"key": key, "norms": norms, "fooled": fooled}, path)
    return MinimumNorms(attack, model_name, norms, fooled)


def _attack_images(
    fn: Callable[..., torch.Tensor],
    model: torch.nn.Module,
    images: Sequence[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    ignore: int,
    device: str,
    progress: str | bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(norms, fooled) of the minimum-norm attack ``fn`` on each (image, label) pair, one image at a time;
    ``progress``: the bar's title, or ``False``."""
    norms = torch.full((len(images),), float("inf"), dtype=torch.float64)
    fooled = torch.zeros(len(images), dtype=torch.float64)
    bar = progress_bar(range(len(images)), enabled=bool(progress), desc=str(progress), unit="image")
    # adv-lib compiles its proximal step with torch.compile, which on a CPU needs a C++ tool chain and prints
    # warnings; eager mode computes the same function.
    with attack_mode(model), torch.compiler.set_stance("force_eager"):
        for i in bar:
            x, y = (t[None].to(device) for t in images[i])
            x_adv = fn(model, x, y, masks=y != ignore)
            with torch.no_grad():
                stats = compute_stats(model(x_adv).argmax(1), y, num_classes, ignore)
            fooled[i] = 1 - float(stats.image_accuracy()[0])
            if fooled[i] >= ADV_THRESHOLD:
                norms[i] = float((x_adv - x).abs().max())
    return norms, fooled


def bounded_robust_share(result: EvaluationResult, attack: str | None = None) -> float:
    """Share of images (in %) that keep more than 1 - :data:`ADV_THRESHOLD` of their labelled pixels correct under
    ``attack`` (one of the run's losses) or, for ``None``, under SEA's worst case over its attacks."""
    stats = result.worst_stats("acc") if attack is None else result.sea.attack_stats[attack]
    return 100 * float((stats.image_accuracy() > 1 - ADV_THRESHOLD).double().mean())


def robust_image_curves(
    params: ParamSet,
    models: Sequence[str],
    radii: dict[str, Sequence[float]],
    n_images: int,
    *,
    device: str = "cpu",
) -> pd.DataFrame:
    """The Fig. 6 table: per model and radius, the share of robust images under APGD on Mask-CE (red-ε), SEA,
    ALMA prox and DAG on the first ``n_images`` images; also written to ``results/<profile>/``
    :data:`ROBUST_IMAGES_FILE`.

    APGD and SEA run on the images of the book's cheaper sweeps (:func:`robseg_lib.book.experiments.sweep_images`)
    and are read on the first ``n_images``: their runs are then ones the other chapters share and compare on the
    same images, not runs on an image count of their own.

    Returns:
        Columns ``model, eps_255, attack, robust_images`` (in %).
    """
    run_images = max(n_images, sweep_images(params))
    rows = []
    for model in models:
        bounded = {"APGD (Mask-CE)": ("apgd:mce", "mce"), "SEA": ("sea", None)}
        minimum = {
            "ALMA prox": minimum_norms(params, model, "alma_prox", n_images, device=device),
            "DAG": minimum_norms(params, model, "dag", n_images, device=device),
        }
        for eps in radii[model]:
            for label, (spec, loss) in bounded.items():
                request = evaluate.Evaluation.of(
                    params, model, eps=eps, attack=spec, n_images=run_images, device=device
                )
                share = bounded_robust_share(evaluate.run(request).head(n_images), loss)
                rows.append({"model": model, "eps_255": eps, "attack": label, "robust_images": share})
            for label, found in minimum.items():
                (share,) = found.robust_share([eps])
                rows.append({"model": model, "eps_255": eps, "attack": label, "robust_images": share})
    frame = pd.DataFrame(rows, columns=["model", "eps_255", "attack", "robust_images"])
    atomic_write(profile_results_root(params.profile) / ROBUST_IMAGES_FILE, lambda p: frame.to_csv(p, index=False))
    return frame


def robust_image_figure(frame: pd.DataFrame, titles: dict[str, str]) -> Figure:
    """One panel per model (``titles``: model -> panel title): share of robust images against ε, one line per
    attack (the layout of the paper's Fig. 6)."""
    fig, axes = plt.subplots(1, len(titles), figsize=(5 * len(titles), 3.6), squeeze=False)
    for ax, (model, title) in zip(axes[0], titles.items(), strict=True):
        part = frame[frame["model"] == model]
        for attack, rows in part.groupby("attack", sort=False):
            ax.plot(rows["eps_255"], rows["robust_images"], marker="o", label=attack)
        ax.set(title=title, xlabel="ε (/255)", ylabel="robust images (%)", ylim=(-3, 103))
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.tight_layout()
    return fig


def robust_image_table(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`robust_image_curves`' table as rows (model, ε) x one column per attack, in %."""
    table = frame.pivot_table(index=["model", "eps_255"], columns="attack", values="robust_images", sort=False)
    table.columns.name = None
    return table.rename_axis(["model", "ε (/255)"]).round(1)


def norm_table(params: ParamSet, models: dict[str, str], n_images: int, *, device: str = "cpu") -> pd.DataFrame:
    """Per image (columns), the ℓ∞ norm in /255 each minimum-norm attack needed on each model (``models``: row
    label -> zoo model); ``inf`` where it never reached :data:`ADV_THRESHOLD`."""
    rows = {
        f"{label}, {attack}": (255 * minimum_norms(params, name, attack, n_images, device=device).norms).numpy()
        for label, name in models.items()
        for attack in MINIMUM_NORM_ATTACKS
    }
    return pd.DataFrame(rows).T.round(1).rename(columns=lambda i: f"image {i}")
