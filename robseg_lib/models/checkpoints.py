"""Checkpoint I/O: the authors' released PIR-AT files, robust ImageNet backbones, and our own safetensors files.

Three formats meet here (algorithms §11-12):

* released segmentation checkpoints (``.pth``, plain state dicts, original ConvNeXt names in the UPerNet
  backbone), translated by the single table :data:`RELEASE_KEY_MAP`;
* robust ImageNet backbones of Revisiting-AT (timm names behind ``module.``/``base_model.``/``model.`` prefixes)
  and our own :func:`~robseg_lib.models.create_classifier` states (``backbone.*``), loaded by
  :func:`load_backbone` with a :class:`BackboneLoadReport`;
* our checkpoints: ``<name>.safetensors`` plus ``<name>.safetensors.json`` holding the metadata.

Pickled code is never executed: ``.pth`` files are read with ``torch.load(weights_only=True)`` (with
``argparse.Namespace`` allowed, as timm training checkpoints store their options in one).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from robseg_lib._io import atomic_json_dump, atomic_write

from ._vit import resize_pos_embed

__all__ = [
    "RELEASE_KEY_MAP",
    "BackboneLoadReport",
    "from_release_keys",
    "load_backbone",
    "load_checkpoint",
    "read_checkpoint_meta",
    "save_checkpoint",
    "to_release_keys",
]

StateDict = dict[str, torch.Tensor]

#: Authors' key prefix -> our key prefix, first match wins; ``{j}``/``{k}`` are stage/block indices. Keys that
#: match no row (decode/auxiliary heads, ``backbone.norm0..3``, all Segmenter keys) are identical in both.
RELEASE_KEY_MAP: tuple[tuple[str, str], ...] = (
    ("backbone.downsample_layers.0.stem.", "backbone.stem.stem."),
    ("backbone.downsample_layers.{j}.", "backbone.stages.{j}.downsample."),
    ("backbone.stages.{j}.{k}.dwconv.", "backbone.stages.{j}.blocks.{k}.conv_dw."),
    ("backbone.stages.{j}.{k}.norm.", "backbone.stages.{j}.blocks.{k}.norm."),
    ("backbone.stages.{j}.{k}.pwconv1.", "backbone.stages.{j}.blocks.{k}.mlp.fc1."),
    ("backbone.stages.{j}.{k}.pwconv2.", "backbone.stages.{j}.blocks.{k}.mlp.fc2."),
    ("backbone.stages.{j}.{k}.gamma", "backbone.stages.{j}.blocks.{k}.gamma"),
)

_WRAPPER_KEYS = ("state_dict", "model")
_BACKBONE_PREFIXES = ("module.", "base_model.", "model.")
_NORMALIZER_PREFIXES = ("base_normalize.", "normalize.")
_LIST_LIMIT = 20
# timm's training script stores its argparse options beside the weights; a Namespace only holds attributes.
_SAFE_GLOBALS: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [argparse.Namespace]


def _compile(pattern: str) -> re.Pattern[str]:
    regex = re.escape(pattern).replace(r"\{j\}", r"(?P<j>\d+)").replace(r"\{k\}", r"(?P<k>\d+)")
    return re.compile("^" + regex + ("" if pattern.endswith(".") else "$"))


_FORWARD = tuple((_compile(src), dst) for src, dst in RELEASE_KEY_MAP)
_BACKWARD = tuple((_compile(dst), src) for src, dst in RELEASE_KEY_MAP)


def _translate(key: str, rules: tuple[tuple[re.Pattern[str], str], ...]) -> str:
    for regex, target in rules:
        match = regex.match(key)
        if match:
            return target.format(**match.groupdict()) + key[match.end() :]
    return key


def _rename(state: Mapping[str, torch.Tensor], rules: tuple[tuple[re.Pattern[str], str], ...]) -> StateDict:
    out: StateDict = {}
    for key, value in state.items():
        new = _translate(key, rules)
        if new in out:
            raise ValueError(f"two checkpoint keys map to {new!r}")
        out[new] = value
    return out


def from_release_keys(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Rename the authors' released key names to ours (:data:`RELEASE_KEY_MAP`); other keys pass unchanged."""
    return _rename(state, _FORWARD)


def to_release_keys(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Inverse of :func:`from_release_keys`: our key names to the authors' released ones."""
    return _rename(state, _BACKWARD)


def _short_list(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:_LIST_LIMIT])
    more = f", ... and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else ""
    return f"[{shown}{more}]"


def _read(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = re.search(r"Unsupported global: [^\n]*?(?=\. Please|\n|$)", str(err))
        detail = reason.group(0) if reason else str(err).splitlines()[0]
        raise RuntimeError(
            f"refusing to load {path}: it holds pickled Python objects, not only tensors ({detail}). "
            "robseg_lib reads checkpoints with torch.load(weights_only=True) so that no code from a file is "
            "executed; re-save the file as a plain state dict of tensors."
        ) from err


def _as_state_dict(obj: Any, source: str) -> StateDict:
    """Unwrap an optional {"state_dict"|"model": ...} wrapper and check that only tensors remain."""
    for _ in range(2):
        if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
    if not isinstance(obj, Mapping):
        raise TypeError(f"{source}: expected a state dict (mapping of names to tensors), got {type(obj).__name__}")
    bad = sorted(str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor))
    if bad:
        raise TypeError(f"{source}: entries that are not tensors: {_short_list(bad)}")
    return dict(obj)


def _strip_prefix(key: str, prefixes: Iterable[str]) -> str:
    prefixes = tuple(prefixes)
    while key.startswith(prefixes):
        key = key[len(next(p for p in prefixes if key.startswith(p))) :]
    return key


def _check_and_load(model: nn.Module, state: StateDict, strict: bool, source: str) -> None:
    own = model.state_dict()
    missing = sorted(own.keys() - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(own.keys() & state.keys())
        if state[k].shape != own[k].shape
    ]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} key(s) with mismatched shapes {_short_list(mismatched)}")
    if missing:
        problems.append(f"{len(missing)} missing key(s) {_short_list(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) {_short_list(unexpected)}")
    if mismatched or (strict and problems):
        raise RuntimeError(f"cannot load {source} into {type(model).__name__}: " + "; ".join(problems))
    if problems:
        warnings.warn(f"non-strict load of {source}: " + "; ".join(problems), stacklevel=3)
    model.load_state_dict(state, strict=strict)


def load_checkpoint(model: nn.Module, path: str | Path, strict: bool = True) -> None:
    """Load a released PIR-AT ``.pth`` file (authors' key names) or one of our ``.safetensors`` files.

    ``.pth`` files are read with ``weights_only=True``; a ``{"state_dict"|"model": ...}`` wrapper and a
    ``module.`` prefix are removed and the authors' names are translated with :data:`RELEASE_KEY_MAP`.

    Args:
        model: the segmentation model, built with the matching :func:`~robseg_lib.models.create_model` name.
        path: checkpoint file.
        strict: require the exact key set (shape mismatches always raise; otherwise missing or unexpected
            keys are reported with a warning).

    Raises:
        FileNotFoundError: no such file.
        RuntimeError: the file needs pickled code, or keys are missing, unexpected or mis-shaped (all listed).
        TypeError: the file does not hold a state dict of tensors.
    """
    state = _as_state_dict(_read(path), str(path))
    state = {_strip_prefix(k, ("module.",)): v for k, v in state.items()}
    _check_and_load(model, from_release_keys(state), strict, str(path))


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def save_checkpoint(model: nn.Module, path: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write ``model``'s state dict to ``path`` (safetensors) and ``meta`` to ``<path>.json``, both atomically.

    The weights are written first, so an existing JSON file marks a complete checkpoint.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path}")
    if not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a mapping, got {type(meta).__name__}")
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as err:
        raise TypeError(f"meta must be JSON-serialisable: {err}") from err
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    atomic_json_dump(dict(meta), _meta_path(path))
    return path


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    """The metadata written by :func:`save_checkpoint` beside ``path``."""
    meta_path = _meta_path(Path(path))
    if not meta_path.is_file():
        raise FileNotFoundError(f"no metadata file {meta_path}")
    return json.loads(meta_path.read_text())


@dataclass(frozen=True)
class BackboneLoadReport:
    """What :func:`load_backbone` did.

    Attributes:
        target: model attribute that received the weights (``"backbone"`` or ``"encoder"``).
        loaded: model keys set from the source.
        resized: model keys loaded after resizing (the ViT position embedding), as ``"key: old -> new"``.
        left_at_init: model keys keeping their fresh initialisation (e.g. ``backbone.norm0..3``, the heads).
        unused: source keys (after prefix normalisation) that were not loaded (e.g. the classifier head).
        skipped: source keys skipped for a shape mismatch (only with ``strict_shapes=False``).
    """

    target: str
    loaded: tuple[str, ...]
    resized: tuple[str, ...]
    left_at_init: tuple[str, ...]
    unused: tuple[str, ...]
    skipped: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [
            f"loaded {len(self.loaded)} tensors into {self.target}",
            f"left at init: {len(self.left_at_init)} {_summarise(self.left_at_init)}",
            f"unused source keys: {len(self.unused)} {_summarise(self.unused)}",
        ]
        lines += [f"resized {item}" for item in self.resized]
        if self.skipped:
            lines.append(f"skipped (shape mismatch): {len(self.skipped)} {_short_list(self.skipped)}")
        return "\n".join(lines)


def _summarise(keys: Iterable[str]) -> str:
    """Group keys by at most two leading name parts (stopping at an index): ``decode_head.lateral_convs (18)``."""
    groups: dict[str, int] = {}
    for key in keys:
        stem: list[str] = []
        for part in key.split(".")[:-1]:
            if part.isdigit() or len(stem) == 2:
                break
            stem.append(part)
        name = ".".join(stem) or key
        groups[name] = groups.get(name, 0) + 1
    return "[" + ", ".join(f"{name} ({n})" for name, n in groups.items()) + "]"


def _target(model: nn.Module) -> tuple[str, nn.Module]:
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, VisionTransformer):
        return "encoder", encoder
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, nn.Module):
        return "backbone", backbone
    raise TypeError(f"{type(model).__name__} has neither a ViT `encoder` nor a `backbone` to load into")


def _optional_at_init(key: str, is_vit: bool) -> bool:
    """Backbone keys absent from ImageNet checkpoints: ConvNeXt per-stage output norms, the ViT's head."""
    return key.startswith("head.") if is_vit else re.match(r"norm\d+\.", key) is not None


def load_backbone(
    model: nn.Module, source: str | Path | Mapping[str, torch.Tensor], strict_shapes: bool = True
) -> BackboneLoadReport:
    """Initialise the backbone (UPerNet) or encoder (Segmenter) of ``model`` from an ImageNet-style checkpoint.

    Accepted sources (path or state dict): Revisiting-AT ConvNeXt-CvSt and ViT-S files (prefixes
    ``module.``/``base_model.``/``model.``/``base_`` stripped, ``base_normalize.*`` dropped, timm names) and
    our own :func:`~robseg_lib.models.create_classifier` states (``backbone.*``). Classification-head keys
    (``head.*``) load only where the target has the same tensor (the paper ViT-S encoder keeps a 1000-way
    head); otherwise they are reported unused. The ViT position embedding is resized bilinearly to the
    model's grid, class token kept.

    Raises:
        RuntimeError: a source key has no counterpart in the backbone, a backbone tensor is not provided
            by the source, or shapes differ (unless ``strict_shapes=False``, which skips and reports them).
    """
    name = "state dict" if isinstance(source, Mapping) else str(source)
    state = _as_state_dict(source if isinstance(source, Mapping) else _read(source), name)
    target, module = _target(model)
    is_vit = isinstance(module, VisionTransformer)
    own = module.state_dict()

    values: StateDict = {}
    unused: list[str] = []
    for key, value in state.items():
        key = _strip_prefix(key, _BACKBONE_PREFIXES)
        if key.startswith(_NORMALIZER_PREFIXES):
            unused.append(key)
            continue
        key = _strip_prefix(_strip_prefix(key, ("base_",)), ("backbone.",))
        if key in values:
            raise RuntimeError(f"{name}: two source keys map to {key!r}")
        values[key] = value

    resized: list[str] = []
    if is_vit and "pos_embed" in values and "pos_embed" in own:
        old, new = values["pos_embed"], own["pos_embed"]
        if old.shape != new.shape and old.ndim == 3 and old.shape[-1] == new.shape[-1]:
            side = math.isqrt(new.shape[1] - 1)
            values["pos_embed"] = resize_pos_embed(old, (side, side))
            resized.append(f"{target}.pos_embed: {tuple(old.shape)} -> {tuple(new.shape)}")

    heads = {k for k in values if k.startswith("head.")}
    foreign = sorted(k for k in values.keys() - own.keys() - heads)
    mismatched = sorted(k for k in values.keys() & own.keys() if values[k].shape != own[k].shape)
    head_mismatched = [k for k in mismatched if k in heads]
    mismatched = [k for k in mismatched if k not in heads]
    absent = sorted(k for k in own.keys() - values.keys() if not _optional_at_init(k, is_vit))
    problems = []
    if foreign:
        problems.append(f"source keys with no counterpart in model.{target}: {_short_list(foreign)}")
    if absent:
        problems.append(f"model.{target} tensors missing from the source: {_short_list(absent)}")
    if mismatched and strict_shapes:
        shapes = [f"{k}: source {tuple(values[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched]
        problems.append(f"shape mismatches: {_short_list(shapes)}")
    if problems:
        raise RuntimeError(f"cannot load backbone from {name}: " + "; ".join(problems))

    unused += [k for k in sorted(heads) if k not in own or k in head_mismatched]
    skip = set(mismatched) | set(head_mismatched)
    to_load = {k: v for k, v in values.items() if k in own and k not in skip}
    module.load_state_dict(to_load, strict=False)
    prefix = f"{target}."
    loaded = {prefix + k for k in to_load}
    return BackboneLoadReport(
        target=target,
        loaded=tuple(sorted(loaded)),
        resized=tuple(resized),
        left_at_init=tuple(k for k in model.state_dict() if k not in loaded),
        unused=tuple(unused),
        skipped=tuple(prefix + k for k in mismatched),
    )
