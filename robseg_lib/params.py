"""Typed, validated parameter sets loaded from ``params/<profile>/*.yaml``.

A profile is a folder of YAML files whose top-level sections (``data``, ``eval``, ``train``, ``pretrain``,
``models``) are parsed into frozen dataclasses. Any unknown key, wrong type or out-of-range value fails
with one message naming the file, the key and what was expected: a typo must never be silently ignored.
A file may ``include`` sibling files (paper-scale model files share ``_common.yaml``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from robseg_lib.paths import PARAMS_ENV, params_root

__all__ = [
    "BACKBONE_KINDS",
    "CLASS_WEIGHT_OPTIONS",
    "DataParams",
    "EvalParams",
    "ModelParams",
    "NotebookSetup",
    "ParamError",
    "ParamSet",
    "PretrainParams",
    "TrainParams",
    "check_device",
    "list_profiles",
    "load_params",
    "notebook_setup",
]

CLASS_WEIGHT_OPTIONS = ("train_split", "released", "uniform")
"""MCE-Bal class-weight options of an evaluation (algorithms §3.4)."""
BACKBONE_KINDS = ("clean", "robust")
"""The tiny profile's pre-trained backbones: a clean and an adversarially trained digit classifier."""

_CHOICES = "choices"
_RANGE = "range"


def _f(
    default: Any = dataclasses.MISSING,
    *,
    choices: Iterable[Any] | None = None,
    range: tuple | None = None,
    doc: str = "",
) -> Any:
    """A dataclass field with validation metadata: allowed ``choices`` or an inclusive/exclusive ``range``."""
    meta: dict[str, Any] = {"doc": doc}
    if choices is not None:
        meta[_CHOICES] = tuple(choices)
    if range is not None:
        meta[_RANGE] = range
    if isinstance(default, (list, dict, tuple)):
        value = default
        return field(default_factory=lambda: value, metadata=meta)
    return field(default=default, metadata=meta)


class ParamError(ValueError):
    """A parameter file or a notebook parameter is invalid."""


# Ranges are (low, high, low_inclusive, high_inclusive); None means unbounded.
_POS = (0, None, False, False)
_NONNEG = (0, None, True, False)
_EPS = (0, 64, False, True)
_FRACTION = (0, 1, True, True)


@dataclass(frozen=True, kw_only=True)
class DataParams:
    """The data set of a profile."""

    name: str = _f(choices=("digitscenes", "voc", "ade20k"), doc="data set")
    num_classes: int = _f(range=(2, None, True, False), doc="classes including background")
    root: str | None = _f(None, doc="local folder of a real data set (voc, ade20k)")
    ignore_index: int = _f(255, doc="label of unlabelled pixels")
    image_size: int = _f(range=_POS, doc="DigitScenes image side / evaluation crop side")
    base_size: int | None = _f(None, range=_POS, doc="training rescale base (VOC 512, ADE20K 520)")
    train_size: int | None = _f(None, range=_POS, doc="DigitScenes training images")
    val_size: int | None = _f(None, range=_POS, doc="DigitScenes validation images")
    digits_per_image: tuple[int, int] = _f((2, 4), doc="DigitScenes: min and max digits per image")
    train_crop: int | None = _f(None, range=_POS, doc="DigitScenes: side of the random training crops (None: whole)")
    seed: int = _f(0, range=_NONNEG, doc="generation seed")


@dataclass(frozen=True, kw_only=True)
class EvalParams:
    """Defaults of an evaluation (SEA and baselines)."""

    eps: int = _f(range=_EPS, doc="L-inf radius in /255")
    n_iter: int = _f(300, range=_POS, doc="attack iterations per loss")
    n_images: int | None = _f(None, range=_POS, doc="evaluate the first n validation images (None: all)")
    batch_size: int = _f(16, range=_POS, doc="images per attack batch")
    seed: int = _f(0, range=_NONNEG, doc="seed of random starts and of the greedy search")
    device: str = _f("cpu", doc="torch device")
    losses: tuple[str, ...] = _f(("mce-bal", "mce", "js"), doc="SEA's losses")
    class_weights: str = _f("train_split", choices=CLASS_WEIGHT_OPTIONS, doc="MCE-Bal class weights")
    radii: tuple[int, ...] = _f((), doc="radii in /255 that multi-radius notebooks sweep")
    model: str | None = _f(None, doc="zoo model evaluated by default (notebooks, command line)")
    targeted_eps: int = _f(2, range=_EPS, doc="radius in /255 of the targeted attacks of Figure 1 (paper: 2/255)")
    min_norm_images: int = _f(16, range=_POS, doc="images of the minimum-norm comparison of Figure 6 (paper: 160)")


@dataclass(frozen=True, kw_only=True)
class TrainParams:
    """Training settings (paper Table 4 at paper scale)."""

    epochs: int = _f(range=_POS, doc="training epochs")
    batch_size: int = _f(range=_POS, doc="global batch size")
    optimizer: str = _f("adamw", choices=("adamw", "sgd"))
    lr: float = _f(1e-3, range=_POS, doc="base learning rate")
    weight_decay: float = _f(1e-2, range=_NONNEG, doc="not applied to norm and bias parameters")
    momentum: float = _f(0.9, range=_FRACTION, doc="SGD momentum")
    betas: tuple[float, float] = _f((0.9, 0.999), doc="AdamW betas")
    warmup_epochs: float = _f(0.0, range=_NONNEG, doc="linear warm-up length")
    warmup_ratio: float = _f(1e-5, range=_FRACTION, doc="LR at the start of warm-up, relative to lr")
    power: float = _f(1.0, range=_POS, doc="poly decay power")
    aux_weight: float = _f(0.4, range=_NONNEG, doc="auxiliary head loss weight (UPerNet)")
    attack_steps: int = _f(0, range=_NONNEG, doc="PGD steps of the training attack (0 = clean training)")
    attack_eps: int = _f(4, range=_EPS, doc="training attack radius in /255")
    attack_step_size: float = _f(0.01, range=_POS, doc="training attack step in [0,1] units")
    drop_path: float | None = _f(None, range=_FRACTION, doc="stochastic depth (None: the model's default)")
    augment: bool = _f(True, doc="training augmentation")
    amp: bool = _f(False, doc="mixed precision (GPU only)")
    num_workers: int = _f(0, range=_NONNEG, doc="data loader workers")
    seed: int = _f(0, range=_NONNEG)
    log_every_epochs: int = _f(1, range=_POS, doc="validation (clean and cheap robust mIoU) every n epochs")
    robust_val_iter: int = _f(10, range=_NONNEG, doc="APGD iterations of the cheap robust validation")
    val_images: int | None = _f(None, range=_POS, doc="validation images used in training logs")


@dataclass(frozen=True, kw_only=True)
class PretrainParams:
    """Digit-classification pre-training of tiny backbones (the default profile's "ImageNet")."""

    epochs: int = _f(range=_POS)
    clean_epochs: int = _f(0, range=_NONNEG, doc="clean warm-up epochs before adversarial training")
    batch_size: int = _f(64, range=_POS)
    lr: float = _f(1e-3, range=_POS)
    weight_decay: float = _f(0.05, range=_NONNEG)
    eps: int = _f(8, range=_EPS, doc="adversarial training radius in /255 (robust backbones)")
    attack_steps: int = _f(2, range=_NONNEG)
    crop_size: int = _f(32, range=_POS, doc="side of the digit crops")
    train_size: int = _f(4000, range=_POS, doc="training crops")
    val_size: int = _f(500, range=_POS, doc="held-out crops (digits never seen in training)")
    seed: int = _f(0, range=_NONNEG)
    per_arch: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        metadata={"doc": "overrides for one architecture, e.g. {tiny_segmenter_vit: {lr: 1.0e-3}}"},
    )

    def __post_init__(self) -> None:
        for arch in self.per_arch:
            self.for_arch(arch)

    def for_arch(self, arch: str) -> PretrainParams:
        """The parameters that pre-train ``arch``'s backbone: these with ``per_arch[arch]`` applied.

        The result has no ``per_arch`` of its own, so one architecture's overrides never change another's.
        """
        base = {k: v for k, v in dataclasses.asdict(self).items() if k != "per_arch"}
        overrides = self.per_arch.get(arch, {})
        if not isinstance(overrides, Mapping) or "per_arch" in overrides:
            raise ParamError(f"pretrain.per_arch.{arch}: expected a mapping of pretrain keys, got {overrides!r}")
        return _build(PretrainParams, {**base, **overrides}, f"pretrain.per_arch.{arch}")


@dataclass(frozen=True, kw_only=True)
class ModelParams:
    """One model of a profile's zoo."""

    arch: str = _f(doc="registered architecture (robseg_lib.models.list_models())")
    regime: str = _f("clean", choices=("clean", "at", "pir-at"), doc="clean training, AT or PIR-AT")
    backbone_init: str | None = _f(
        None,
        choices=(None, "random", "clean", "robust"),
        doc="backbone init; default: robust for pir-at, clean otherwise",
    )
    backbone_checkpoint: str | None = _f(None, doc="paper scale: ImageNet backbone file")
    checkpoint: str | None = _f(None, doc="paper scale: released segmentation checkpoint")
    released: str | None = _f(None, doc="share id of the authors' released checkpoint of this model")
    train: dict[str, Any] = field(default_factory=dict, metadata={"doc": "overrides of the profile's train section"})
    description: str = _f("", doc="one line for tables")

    @property
    def init(self) -> str:
        """The effective backbone initialisation."""
        if self.backbone_init is not None:
            return self.backbone_init
        return "robust" if self.regime == "pir-at" else "clean"


_SECTIONS: dict[str, type] = {
    "data": DataParams,
    "eval": EvalParams,
    "train": TrainParams,
    "pretrain": PretrainParams,
}


@dataclass(frozen=True, kw_only=True)
class ParamSet:
    """All sections of a profile (or of one parameter file with its includes)."""

    profile: str
    source: str
    data: DataParams
    eval: EvalParams
    train: TrainParams | None = None
    pretrain: PretrainParams | None = None
    models: dict[str, ModelParams] = field(default_factory=dict)

    def model(self, name: str) -> ModelParams:
        """The named model; an unknown name lists the valid ones."""
        if name not in self.models:
            raise ParamError(
                f"unknown model {name!r} in profile {self.profile!r}; valid: {', '.join(sorted(self.models)) or 'none'}"
                + _suggest(name, self.models)
            )
        return self.models[name]

    def default_model(self) -> str:
        """The model evaluated when none is named: ``eval.model``, else the only model, else the only released one."""
        if self.eval.model is not None:
            self.model(self.eval.model)
            return self.eval.model
        if len(self.models) == 1:
            return next(iter(self.models))
        released = [name for name, m in self.models.items() if m.released]
        if len(released) == 1:
            return released[0]
        raise ParamError(
            f"name a model: {self.source} sets no eval.model and has {len(self.models)} models "
            f"({', '.join(self.models) or 'none'}), {len(released)} of them released"
        )

    def eval_with(self, **overrides: Any) -> EvalParams:
        """The profile's eval section with overrides applied (``None`` keeps the profile's value), validated."""
        merged = {**dataclasses.asdict(self.eval), **{k: v for k, v in overrides.items() if v is not None}}
        return _build(EvalParams, merged, f"{self.source}: eval (with overrides {sorted(overrides)})")

    def train_for(self, name: str) -> TrainParams:
        """The training parameters of a model: the profile's train section with the model's overrides."""
        if self.train is None:
            raise ParamError(f"profile {self.profile!r} has no train section ({self.source})")
        overrides = self.model(name).train
        return _build(
            TrainParams,
            {**dataclasses.asdict(self.train), **overrides},
            f"{self.source}: models.{name}.train",
        )


def list_profiles(root: Path | None = None) -> list[str]:
    """Names of the available profiles (folders of :func:`robseg_lib.paths.params_root`)."""
    root = root or params_root()
    if not root.is_dir():
        raise ParamError(
            f"the profiles folder {root} does not exist: the installed package lacks its profiles/ data"
            f" (reinstall robseg_lib) or ${PARAMS_ENV} points elsewhere"
        )
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.yaml")))


def load_params(source: str | Path, root: Path | None = None) -> ParamSet:
    """Load a profile by name (``"tiny"``), a profile folder, or one parameter file.

    Raises:
        ParamError: unknown profile (listing the valid ones), unknown key, wrong type, value out of range,
            or a section defined twice.
    """
    root = root or params_root()
    path = Path(source)
    if not path.exists():
        if "/" in str(source) or str(source).endswith((".yaml", ".yml")):
            raise ParamError(f"parameter file {source} does not exist")
        path = root / str(source)
        if not path.is_dir():
            raise ParamError(
                f"unknown profile {source!r}; valid: {', '.join(list_profiles(root))}"
                + _suggest(str(source), list_profiles(root))
            )
    files = sorted(p for p in path.glob("*.yaml") if not p.name.startswith("_")) if path.is_dir() else [path]
    if not files:
        raise ParamError(f"no parameter files (*.yaml) in {path}")
    sections: dict[str, tuple[Path, Any]] = {}
    models: dict[str, ModelParams] = {}
    seen: set[Path] = set()
    for file in files:
        for part in _with_includes(file.resolve(), ()):
            if part in seen:
                continue
            seen.add(part)
            _collect(part, sections, models)
    profile = path.name if path.is_dir() else path.parent.name
    for required in ("data", "eval"):
        if required not in sections:
            raise ParamError(f"{path}: no {required!r} section in {', '.join(str(f) for f in files)}")
    built = {name: _build(_SECTIONS[name], raw, f"{src}: {name}") for name, (src, raw) in sections.items()}
    return ParamSet(profile=profile, source=str(path), models=models, **built)


def _with_includes(file: Path, stack: tuple[Path, ...]) -> list[Path]:
    if file in stack:
        raise ParamError(f"{file}: circular include via {' -> '.join(map(str, stack))}")
    raw = _read_yaml(file)
    includes = raw.get("include", [])
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ParamError(f"{file}: 'include' must be a list of file names, got {includes!r}")
    out: list[Path] = []
    for name in includes:
        inc = (file.parent / name).resolve()
        if not inc.exists():
            raise ParamError(f"{file}: included file {name} does not exist")
        out.extend(_with_includes(inc, (*stack, file)))
    return [*out, file]


def _read_yaml(file: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamError(f"{file}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ParamError(f"{file}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    return raw


def _collect(file: Path, sections: dict[str, tuple[Path, Any]], models: dict[str, ModelParams]) -> None:
    raw = _read_yaml(file)
    for key, value in raw.items():
        if key == "include":
            continue
        if key == "models":
            if not isinstance(value, dict):
                raise ParamError(f"{file}: 'models' must map model names to settings")
            for name, spec in value.items():
                if name in models:
                    raise ParamError(f"{file}: model {name!r} is defined twice")
                model = _build(ModelParams, spec, f"{file}: models.{name}")
                _build(TrainParams, {**_TRAIN_PLACEHOLDER, **model.train}, f"{file}: models.{name}.train")
                models[name] = model
            continue
        if key not in _SECTIONS:
            valid = [*_SECTIONS, "models", "include"]
            raise ParamError(f"{file}: unknown section {key!r}; valid: {', '.join(valid)}" + _suggest(key, valid))
        if key in sections:
            raise ParamError(f"{file}: section {key!r} is already defined in {sections[key][0]}")
        sections[key] = (file, value)


# Required TrainParams fields filled in so that a model's partial overrides can be type-checked alone.
_TRAIN_PLACEHOLDER = {"epochs": 1, "batch_size": 1}


def _build(cls: type, raw: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, validating keys, types and ranges."""
    if not isinstance(raw, Mapping):
        raise ParamError(f"{where}: expected a mapping of keys to values, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            raise ParamError(f"{where}: unknown key {key!r}; valid keys: {', '.join(fields)}" + _suggest(key, fields))
    values = {}
    for name, f in fields.items():
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ParamError(f"{where}: missing required key {name!r} ({_type_name(hints[name])})")
            continue
        values[name] = _check_value(raw[name], hints[name], f, f"{where}.{name}")
    return cls(**values)


def _check_value(value: Any, hint: Any, f: dataclasses.Field, where: str) -> Any:
    value = _coerce(value, hint, where)
    choices = f.metadata.get(_CHOICES)
    if choices is not None and value not in choices:
        raise ParamError(
            f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}"
            + _suggest(str(value), [str(c) for c in choices])
        )
    bounds = f.metadata.get(_RANGE)
    if bounds is not None and value is not None:
        _check_range(value, bounds, where)
    return value


def _check_range(value: Any, bounds: tuple, where: str) -> None:
    low, high, low_inc, high_inc = bounds
    ok = (low is None or value > low or (low_inc and value == low)) and (
        high is None or value < high or (high_inc and value == high)
    )
    if not ok:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ParamError(
            f"{where}: {value!r} is out of range {'[' if low_inc else '('}{lo}, {hi}{']' if high_inc else ')'}"
        )


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against a type hint (int, float, str, bool, None unions, tuples, dict)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ParamError as err:
                errors.append(err)
        raise ParamError(f"{where}: expected {_type_name(hint)}, got {value!r} ({type(value).__name__})")
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ParamError(f"{where}: expected a list ({_type_name(hint)}), got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ParamError(f"{where}: expected {len(args)} values ({_type_name(hint)}), got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ParamError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{where}: expected an integer, got {value!r} ({type(value).__name__})")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{where}: expected a number, got {value!r} ({type(value).__name__})")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ParamError(f"{where}: expected a string, got {value!r} ({type(value).__name__})")
        return value
    raise TypeError(f"unsupported parameter type {hint!r} at {where}")


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _suggest(word: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, [str(v) for v in valid], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_device(device: str) -> str:
    """Return ``device`` if usable; a CUDA request on a machine without CUDA fails with a hint to use cpu."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParamError(f"device {device!r} requested but CUDA is not available on this machine; use device='cpu'")
    if device.startswith("mps") and not torch.backends.mps.is_available():
        raise ParamError(f"device {device!r} requested but MPS is not available; use device='cpu'")
    try:
        torch.device(device)
    except RuntimeError as err:
        raise ParamError(f"invalid device {device!r}: {err}") from err
    return device


# Every notebook parameter of the book: type, range and meaning. Notebooks declare a subset.
_NOTEBOOK_PARAMETERS: dict[str, tuple[Any, tuple | None, str]] = {
    "profile": (str, None, "parameter profile (params/<profile>/)"),
    "model": (str | None, None, "zoo model name (params/<profile>/models.yaml); None: the profile's eval.model"),
    "models": (str | None, None, "comma-separated zoo model names; None: the notebook's default set"),
    "eps": (int | None, _EPS, "L-inf radius in /255; None: the profile's eval.eps"),
    "n_iter": (int | None, _POS, "attack iterations; None: the profile's"),
    "n_images": (int | None, _POS, "validation images to evaluate; None: the profile's"),
    "batch_size": (int | None, _POS, "images per batch; None: the profile's"),
    "device": (str | None, None, "torch device; None: the profile's"),
    "seed": (int | None, _NONNEG, "random seed; None: the profile's"),
}


_EVAL_FIELDS = ("eps", "n_iter", "n_images", "batch_size", "device", "seed")
# Globals of an IPython kernel that are not the notebook's own.
_KERNEL_GLOBALS = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})
_LITERALS = (type(None), bool, int, float, str, list, tuple, dict)


class NotebookSetup(NamedTuple):
    """What a book notebook starts from (see :func:`notebook_setup`)."""

    params: ParamSet
    eval: EvalParams
    model_name: str | None


def notebook_setup(namespace: Mapping[str, Any], eval_overrides: Iterable[str] | None = None) -> NotebookSetup:
    """Validate a notebook's papermill parameters and load its profile: the one call after the parameters cell.

    The parameters cell declares each parameter with a type annotation (``eps: Optional[int] = None``).
    papermill injects any ``-p name value`` it is given, even names the notebook does not declare, and only logs
    a line about it; an injected cell holds plain literals without annotations. So a literal global that is not
    annotated is a typo and fails, naming the valid parameters; declared values are checked for type and range.

    Args:
        namespace: the notebook's ``globals()``.
        eval_overrides: the declared parameters that override the profile's eval section; default: every
            declared one of ``eps, n_iter, n_images, batch_size, device, seed``.

    Returns:
        The profile named by ``profile``, its eval section with the overrides, and the model name (``model``, else
        the profile's default model; ``None`` when the notebook declares no ``model``).

    Raises:
        ParamError: an undeclared parameter, a declared one without a specification, a bad value.
    """
    declared = [name for name in namespace.get("__annotations__", {}) if not name.startswith("_")]
    unknown_decl = [d for d in declared if d not in _NOTEBOOK_PARAMETERS]
    if unknown_decl:
        raise ParamError(f"notebook declares parameters without a specification: {unknown_decl}")
    extra = [
        k
        for k, v in namespace.items()
        if not k.startswith("_") and k not in declared and k not in _KERNEL_GLOBALS and isinstance(v, _LITERALS)
    ]
    if extra:
        raise ParamError(
            f"unknown notebook parameter(s) {', '.join(map(repr, extra))}; this notebook takes: {', '.join(declared)}"
            + _suggest(extra[0], declared)
        )
    values = {}
    for name in declared:
        if name not in namespace:
            raise ParamError(f"notebook parameter {name!r} is declared but not set in the parameters cell")
        hint, bounds, _ = _NOTEBOOK_PARAMETERS[name]
        value = _coerce(namespace[name], hint, f"parameter {name}")
        if bounds is not None and value is not None:
            _check_range(value, bounds, f"parameter {name}")
        values[name] = value
    if values.get("device") is not None:
        check_device(values["device"])
    params = load_params(values.get("profile", "tiny"))
    fields = [f for f in _EVAL_FIELDS if f in values] if eval_overrides is None else list(eval_overrides)
    ev = params.eval_with(**{f: values[f] for f in fields})
    model_name = (values["model"] or params.default_model()) if "model" in values else None
    if model_name is not None:
        params.model(model_name)  # an unknown name fails here, listing the valid ones
    return NotebookSetup(params, ev, model_name)
