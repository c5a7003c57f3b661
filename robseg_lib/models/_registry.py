"""Model registry (timm style): named configurations of the paper's models and their tiny CPU counterparts."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from torch import nn

from ._vit import ViTClassifier, create_vit_encoder
from .convnext import ConvNeXtClassifier, ConvNeXtCvSt
from .segmenter import Segmenter
from .upernet import UperNet

__all__ = ["create_classifier", "create_model", "list_models", "model_config"]

_logger = logging.getLogger(__name__)


def _convnext_backbone(
    depths: tuple[int, ...],
    dims: tuple[int, ...],
    drop_path_rate: float,
    stem_width: int | None = None,
    weight_init: str = "paper",
    center_input: bool = False,
    out_norms: bool = True,
) -> ConvNeXtCvSt:
    return ConvNeXtCvSt(
        depths,
        dims,
        drop_path_rate=drop_path_rate,
        stem_width=stem_width,
        weight_init=weight_init,
        center_input=center_input,
        out_norms=out_norms,
    )


def _build_upernet(
    num_classes: int,
    *,
    depths: tuple[int, ...],
    dims: tuple[int, ...],
    drop_path_rate: float,
    stem_width: int | None = None,
    channels: int = 512,
    aux_channels: int = 256,
    pool_scales: tuple[int, ...] = (1, 2, 3, 6),
    weight_init: str = "paper",
    center_input: bool = False,
) -> UperNet:
    backbone = _convnext_backbone(depths, dims, drop_path_rate, stem_width, weight_init, center_input)
    return UperNet(
        backbone,
        num_classes,
        channels=channels,
        aux_channels=aux_channels,
        pool_scales=pool_scales,
        weight_init=weight_init,
    )


def _build_segmenter(
    num_classes: int,
    *,
    img_size: int,
    patch_size: int,
    embed_dim: int,
    depth: int,
    num_heads: int,
    drop_path_rate: float,
    head_classes: int = 0,
    conv_stem: tuple[int, ...] | None = None,
    decoder_layers: int = 2,
    decoder_heads: int | None = None,
    dropout: float = 0.1,
    decoder_drop_path_rate: float = 0.0,
    center_input: bool = False,
) -> Segmenter:
    encoder = create_vit_encoder(
        img_size, patch_size, embed_dim, depth, num_heads, drop_path_rate, head_classes, conv_stem=conv_stem
    )
    return Segmenter(
        encoder,
        num_classes,
        decoder_layers=decoder_layers,
        decoder_heads=decoder_heads,
        dropout=dropout,
        decoder_drop_path_rate=decoder_drop_path_rate,
        center_input=center_input,
    )


def _build_convnext_classifier(num_classes: int, cfg: Mapping[str, Any]) -> nn.Module:
    names = inspect.signature(_convnext_backbone).parameters
    backbone = _convnext_backbone(**{k: v for k, v in cfg.items() if k in names}, out_norms=False)
    return ConvNeXtClassifier(backbone, num_classes, weight_init=cfg.get("weight_init", "paper"))


def _build_vit_classifier(num_classes: int, cfg: Mapping[str, Any]) -> nn.Module:
    names = inspect.signature(create_vit_encoder).parameters
    backbone = create_vit_encoder(**{**{k: v for k, v in cfg.items() if k in names}, "head_classes": 0})
    return ViTClassifier(backbone, num_classes, center_input=cfg.get("center_input", False))


@dataclass(frozen=True)
class _Arch:
    build: Callable[..., nn.Module]
    build_classifier: Callable[[int, Mapping[str, Any]], nn.Module]


@dataclass(frozen=True)
class _Entry:
    arch: str
    defaults: Mapping[str, Any]
    description: str


_ARCHS = {
    "upernet": _Arch(_build_upernet, _build_convnext_classifier),
    "segmenter": _Arch(_build_segmenter, _build_vit_classifier),
}
_MODELS: dict[str, _Entry] = {}


def _register(name: str, arch: str, description: str, **defaults: Any) -> None:
    _MODELS[name] = _Entry(arch, MappingProxyType(dict(defaults)), description)


_register(
    "upernet_convnext_t_cvst",
    "upernet",
    "UPerNet + ConvNeXt-T with ConvStem (paper scale, ~60M parameters)",
    depths=(3, 3, 9, 3),
    dims=(96, 192, 384, 768),
    drop_path_rate=0.4,
)
_register(
    "upernet_convnext_s_cvst",
    "upernet",
    "UPerNet + ConvNeXt-S with ConvStem (paper scale)",
    depths=(3, 3, 27, 3),
    dims=(96, 192, 384, 768),
    drop_path_rate=0.3,
)
_register(
    "segmenter_vit_s",
    "segmenter",
    "Segmenter + ViT-S/16, position embedding for 512x512 (paper scale, ~26M parameters)",
    img_size=512,
    patch_size=16,
    embed_dim=384,
    depth=12,
    num_heads=6,
    drop_path_rate=0.1,
    head_classes=1000,
    decoder_layers=2,
    dropout=0.1,
)
_register(
    "tiny_upernet_convnext",
    "upernet",
    "Tiny UPerNet + ConvNeXt-CvSt for DigitScenes on CPU (fan-in init, centred input: see models.convnext)",
    depths=(1, 1, 2, 1),
    dims=(16, 32, 64, 128),
    drop_path_rate=0.1,
    channels=32,
    aux_channels=32,
    weight_init="fan_in",
    center_input=True,
)
_register(
    "tiny_segmenter_vit",
    "segmenter",
    "Tiny Segmenter + ViT (conv stem of stride 8: see models.ConvStemEmbed; centred input) for DigitScenes on CPU",
    img_size=64,
    patch_size=8,
    conv_stem=(16, 32, 64),
    embed_dim=64,
    depth=4,
    num_heads=2,
    drop_path_rate=0.05,
    head_classes=0,
    decoder_layers=2,
    dropout=0.1,
    center_input=True,
)


def list_models() -> list[str]:
    """Names accepted by :func:`create_model` and :func:`create_classifier`, sorted."""
    return sorted(_MODELS)


def model_config(name: str, **kwargs: Any) -> dict[str, Any]:
    """The resolved configuration of model ``name`` with ``kwargs`` overriding its defaults.

    Raises:
        ValueError: unknown model name or unknown configuration key.
    """
    entry = _entry(name)
    valid = [p for p in inspect.signature(_ARCHS[entry.arch].build).parameters if p != "num_classes"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for model {name!r}; valid options: {valid}")
    return {**entry.defaults, **kwargs}


def create_model(
    name: str, num_classes: int, pretrained_backbone: str | Path | None = None, **kwargs: Any
) -> nn.Module:
    """Build segmentation model ``name`` with ``num_classes`` outputs.

    Args:
        name: a registered name (see :func:`list_models`).
        num_classes: number of segmentation classes.
        pretrained_backbone: optional backbone file (robust ImageNet checkpoint or a ``create_classifier``
            state), loaded with :func:`robseg_lib.models.load_backbone`.
        **kwargs: overrides of the registered configuration (e.g. ``drop_path_rate=0.0``).

    Returns:
        A module with ``forward(x) -> logits`` and ``forward_with_aux(x) -> (logits, aux | None)``.
    """
    _check_num_classes(num_classes)
    cfg = model_config(name, **kwargs)
    model = _ARCHS[_MODELS[name].arch].build(num_classes, **cfg)
    if pretrained_backbone is not None:
        from .checkpoints import load_backbone

        _logger.info("%s", load_backbone(model, pretrained_backbone))
    return model


def create_classifier(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Image classifier on the backbone of segmentation model ``name`` (attribute ``backbone``).

    ConvNeXt: global average pool, LayerNorm, Linear. ViT: class token, Linear. Used to pretrain backbones
    (clean or adversarially) the way ImageNet classifiers are used at paper scale; its ``backbone.*`` state
    loads into the segmentation model with :func:`robseg_lib.models.load_backbone`.
    """
    _check_num_classes(num_classes)
    cfg = model_config(name, **kwargs)
    return _ARCHS[_MODELS[name].arch].build_classifier(num_classes, cfg)


def _entry(name: str) -> _Entry:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {list_models()}")
    return _MODELS[name]


def _check_num_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
