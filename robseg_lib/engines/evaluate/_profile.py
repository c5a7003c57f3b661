"""Evaluations of a profile's models: one typed request (:class:`Evaluation`), one entry point (:func:`run`).

An :class:`Evaluation` fixes everything a profile's evaluation depends on (model, attack spec, radius, the eval
section with its overrides, the data section) and is validated when it is made. :func:`run` evaluates it, or
reads the finished run back. Results live in
``results/<profile>/<spec slug>/<model>/eps<e>_it<n>_img<n>_bs<b>_seed<s>_<class weights>`` (plain ``sea`` in
``results/<profile>/sea/...``; ``$ROBSEG_RESULTS`` overrides ``results/``). A run on the first n images is also
read from a finished run of the same settings on more images when n is a multiple of the batch size: batch i
covers the same images with the same seeds in both, so the per-image numbers are the same.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from robseg_lib.attacks import sea_paper_step_size
from robseg_lib.data import dataset_from_params
from robseg_lib.engines import zoo
from robseg_lib.engines.evaluate._attacks import AttackSpec, parse_attack
from robseg_lib.engines.evaluate._evaluate import evaluate
from robseg_lib.engines.evaluate._result import EvaluationResult
from robseg_lib.engines.evaluate._run_state import _SUMMARY_FILE, RunMismatchError
from robseg_lib.params import DataParams, EvalParams, ParamError, ParamSet
from robseg_lib.paths import cache_root, results_root

if TYPE_CHECKING:
    from robseg_lib.data import SegmentationDataset

__all__ = ["Evaluation", "default_out_dir", "profile_run_fields", "run", "validation_set"]


def default_out_dir(
    profile: str,
    model_name: str,
    eps: float,
    n_iter: int,
    n_images: int,
    batch_size: int,
    seed: int,
    class_weights: str,
    slug: str = "sea",
) -> Path:
    """``results/<profile>/<slug>/<model>/eps<e>_it<n>_img<n>_bs<b>_seed<s>_<weights>`` (``$ROBSEG_RESULTS``
    overrides ``results/``)."""
    name = f"eps{eps:g}_it{n_iter}_img{n_images}_bs{batch_size}_seed{seed}_{class_weights}"
    return results_root() / profile / slug / model_name / name


def profile_run_fields(params: ParamSet, model_name: str, data: DataParams | None = None) -> dict[str, Any]:
    """The arguments of :func:`robseg_lib.engines.evaluate.evaluate` that a profile's model fixes: classes, ignore
    index, data identity, the model id and the class-count cache. Every caller takes them from here, so runs are
    named (and resumed) alike.

    Args:
        params: The profile.
        model_name: Model of the profile's zoo.
        data: Data parameters if not the profile's own (e.g. another ``root``).
    """
    data = params.data if data is None else data
    return {
        "num_classes": data.num_classes,
        "ignore_index": data.ignore_index,
        "data_params": data,
        "model_id": f"{params.profile}/{model_name}",
        "cache_dir": cache_root() / params.profile / "class_counts",
    }


def _check_eps(eps: object) -> float:
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps <= 64:
        raise ParamError(f"eps must lie in (0, 64] (a count of /255, e.g. 4 for 4/255), got {eps!r}")
    return float(eps)


@functools.lru_cache(maxsize=4)
def validation_set(data: DataParams) -> SegmentationDataset:
    """The validation set of a data section, built once per process (DigitScenes takes ~1 s to compose)."""
    return dataset_from_params(data, "val")


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of a profile's model, validated on creation: what :func:`run` takes.

    Make one with :meth:`of`. Attributes:
        params: the profile.
        model_name: a model of the profile's zoo.
        eps: radius in /255 (fractions allowed, e.g. 0.5), in (0, 64].
        attack: the attack spec.
        settings: the profile's eval section with this evaluation's overrides.
        data: the data section evaluated (the profile's, or with another root).
    """

    params: ParamSet
    model_name: str
    eps: float
    attack: AttackSpec
    settings: EvalParams
    data: DataParams

    @classmethod
    def of(
        cls,
        params: ParamSet,
        model_name: str,
        *,
        eps: float | None = None,
        attack: str | AttackSpec = "sea",
        data_root: str | None = None,
        **overrides: Any,
    ) -> Evaluation:
        """The evaluation of ``model_name`` under ``attack`` at ``eps`` /255 (default: the profile's radius).

        Args:
            params: the profile.
            model_name: a model of ``params.models``.
            eps: radius in /255; ``None``: ``params.eval.eps``.
            attack: an attack spec (:func:`robseg_lib.engines.evaluate.parse_attack`).
            data_root: evaluate the data set found at this folder instead of ``params.data.root``.
            **overrides: fields of ``params.eval`` (``n_iter``, ``n_images``, ``batch_size``, ``seed``, ``device``,
                ``class_weights``); ``None`` keeps the profile's value.

        Raises:
            ParamError: an unknown model or eval field, a value out of range.
            ValueError: a malformed spec, ``pgd`` at a radius without a SEA-paper step size, fewer iterations
                than restarts.
        """
        params.model(model_name)  # an unknown name fails here, listing the valid ones
        spec = attack if isinstance(attack, AttackSpec) else parse_attack(attack)
        radius = _check_eps(params.eval.eps if eps is None else eps)
        settings = params.eval_with(**overrides)
        if spec.kind == "pgd":
            sea_paper_step_size(radius / 255)
        if spec.restarts > settings.n_iter:
            raise ValueError(f"{spec.name} needs at least {spec.restarts} iterations, got n_iter={settings.n_iter}")
        data = params.data if data_root is None else dataclasses.replace(params.data, root=data_root)
        return cls(params, model_name, radius, spec, settings, data)

    def dataset(self) -> SegmentationDataset:
        """The evaluated validation set."""
        return validation_set(self.data)

    @property
    def n_images(self) -> int:
        """Images evaluated: the first ``settings.n_images`` of the validation set (all if ``None``).

        Raises:
            ParamError: more images requested than the validation set holds.
        """
        total = len(self.dataset())
        n = total if self.settings.n_images is None else self.settings.n_images
        if n > total:
            raise ParamError(f"n_images={n} but the {self.data.name} validation set has {total} images")
        return n

    def out_dir(self, n_images: int | None = None) -> Path:
        """The results folder of this evaluation (on its first ``n_images`` images, default :attr:`n_images`)."""
        ev = self.settings
        n = self.n_images if n_images is None else n_images
        return default_out_dir(
            self.params.profile,
            self.model_name,
            self.eps,
            ev.n_iter,
            n,
            ev.batch_size,
            ev.seed,
            ev.class_weights,
            slug=self.attack.slug,
        )


def run(
    evaluation: Evaluation,
    *,
    model: nn.Module | None = None,
    out_dir: str | Path | None = None,
    progress: bool = False,
    strict_checks: bool = False,
) -> EvaluationResult:
    """Evaluate ``evaluation``, or read its finished run from disk.

    Args:
        evaluation: what to evaluate.
        model: the model (e.g. loaded from a checkpoint); default: the profile's zoo model, trained on demand.
        out_dir: results folder; default :meth:`Evaluation.out_dir`, which also reuses a finished run of the same
            settings on more images.
        progress: progress bars (training, attack).
        strict_checks: sanity-check flags become errors.

    Returns:
        The run's result; per-attack names are the attacked losses.

    Raises:
        RunMismatchError: the results folder holds a run of other settings (e.g. a retrained model).
    """
    ev, spec = evaluation.settings, evaluation.attack
    dataset = evaluation.dataset()
    n = evaluation.n_images
    if model is None:
        model = zoo.get_model(evaluation.params, evaluation.model_name, device=ev.device, progress=progress)

    def evaluate_in(folder: Path, count: int) -> EvaluationResult:
        return evaluate(
            model,
            dataset,
            folder,
            evaluation.eps / 255,
            attack=spec.attack_fn(),
            n_iter=ev.n_iter,
            batch_size=ev.batch_size,
            n_images=count,
            class_weights=ev.class_weights,
            seed=ev.seed,
            device=ev.device,
            progress=progress,
            losses=spec.attack_losses(ev.losses),
            strict_checks=strict_checks,
            **profile_run_fields(evaluation.params, evaluation.model_name, evaluation.data),
        )

    if out_dir is not None:
        return evaluate_in(Path(out_dir), n)
    folder = evaluation.out_dir(n)
    if not (folder / _SUMMARY_FILE).exists() and n % ev.batch_size == 0:
        for larger, count in _finished_supersets(folder, n):
            try:
                return evaluate_in(larger, count).head(n)
            except RunMismatchError:
                continue
    return evaluate_in(folder, n)


def _finished_supersets(folder: Path, n_images: int) -> list[tuple[Path, int]]:
    """Finished sibling runs that differ from ``folder`` only by covering more images, smallest first."""
    prefix, _, rest = folder.name.partition(f"_img{n_images}_")
    pattern = re.compile(rf"{re.escape(prefix)}_img(\d+)_{re.escape(rest)}")
    found = []
    for sibling in folder.parent.glob(f"{_glob_escape(prefix)}_img*"):
        match = pattern.fullmatch(sibling.name)
        if match and int(match.group(1)) > n_images and (sibling / _SUMMARY_FILE).exists():
            found.append((sibling, int(match.group(1))))
    return sorted(found, key=lambda item: item[1])


def _glob_escape(text: str) -> str:
    """``text`` with glob metacharacters bracketed."""
    return re.sub(r"([*?\[])", r"[\1]", text)
