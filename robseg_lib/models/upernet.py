"""UPerNet decode head, auxiliary FCN head and the UPerNet segmentation model (algorithms §10.2-10.3).

Submodule names reproduce the keys of the authors' released checkpoints (``decode_head.psp_modules.<s>.1.conv``,
``decode_head.lateral_convs.<i>.batch_norm``, ``auxiliary_head.convs.0.conv``, ...), so only the backbone keys
need translating.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .convnext import WEIGHT_INITS, ConvNeXtCvSt

__all__ = ["ConvModule", "FCNHead", "UperNet", "UperNetHead"]


class ConvModule(nn.Module):
    """Convolution without bias, BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.batch_norm = nn.BatchNorm2d(out_channels)
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Conv, BN, ReLU."""
        return self.activation(self.batch_norm(self.conv(x)))


class UperNetHead(nn.Module):
    """Pyramid pooling on the coarsest features, then an FPN over all levels, fused at the finest stride.

    Args:
        in_channels: channels of the backbone features, finest first.
        channels: hidden width (512 in the paper).
        num_classes: number of output classes.
        pool_scales: output sizes of the adaptive average pools of the pyramid pooling module.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        channels: int,
        num_classes: int,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
    ) -> None:
        super().__init__()
        in_channels = tuple(in_channels)
        if len(in_channels) < 2:
            raise ValueError(f"UPerNet needs at least 2 feature levels, got {len(in_channels)}")
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), ConvModule(in_channels[-1], channels, 1))
            for scale in pool_scales
        )
        self.bottleneck = ConvModule(in_channels[-1] + len(pool_scales) * channels, channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvModule(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvModule(channels, channels, 3, padding=1) for _ in in_channels[:-1])
        self.fpn_bottleneck = ConvModule(len(in_channels) * channels, channels, 3, padding=1)
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def _psp(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        pooled = [_resize(module(x), size) for module in self.psp_modules]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Map the backbone features (finest first) to logits at the finest feature stride."""
        if len(feats) != len(self.lateral_convs) + 1:
            raise ValueError(f"expected {len(self.lateral_convs) + 1} feature levels, got {len(feats)}")
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats[:-1], strict=True)]
        laterals.append(self._psp(feats[-1]))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[2:])
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals[:-1], strict=True)]
        outs.append(laterals[-1])
        size = outs[0].shape[2:]
        outs = [outs[0]] + [_resize(o, size) for o in outs[1:]]
        return self.classifier(self.fpn_bottleneck(torch.cat(outs, dim=1)))


class FCNHead(nn.Module):
    """Auxiliary head: one 3x3 ConvModule and a 1x1 classifier (used for the 0.4-weighted training loss)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(ConvModule(in_channels, channels, 3, padding=1))
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map one feature level to logits at its stride."""
        return self.classifier(self.convs(x))


class UperNet(nn.Module):
    """UPerNet segmentation model on a ConvNeXt-CvSt backbone with an auxiliary FCN head.

    ``forward`` returns the main logits at input resolution; ``forward_with_aux`` adds the auxiliary logits
    (training only).

    Args:
        backbone: feature extractor returning 4 levels (strides 4/8/16/32).
        num_classes: number of segmentation classes.
        channels: decode-head width (512 in the paper).
        aux_channels: auxiliary-head width (256 in the paper).
        pool_scales: pyramid pooling scales.
        aux_in_index: backbone level fed to the auxiliary head (2 = stride 16).
        weight_init: ``"paper"``: normal (std 0.02) head convs; ``"fan_in"``: PyTorch's defaults (see
            :data:`robseg_lib.models.convnext.WEIGHT_INITS`).
    """

    def __init__(
        self,
        backbone: ConvNeXtCvSt,
        num_classes: int,
        channels: int = 512,
        aux_channels: int = 256,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        aux_in_index: int = 2,
        weight_init: str = "paper",
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        in_channels = tuple(backbone.out_channels)
        if not 0 <= aux_in_index < len(in_channels):
            raise ValueError(f"aux_in_index must be in [0, {len(in_channels)}), got {aux_in_index}")
        self.num_classes = num_classes
        self.aux_in_index = aux_in_index
        self.backbone = backbone
        self.decode_head = UperNetHead(in_channels, channels, num_classes, pool_scales)
        self.auxiliary_head = FCNHead(in_channels[aux_in_index], aux_channels, num_classes)
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f"unknown weight_init {weight_init!r}; valid: {', '.join(WEIGHT_INITS)}")
        if weight_init == "paper":
            self.decode_head.apply(_init_head)
            self.auxiliary_head.apply(_init_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, H, W) for images (N, 3, H, W) in [0, 1]."""
        _check_images(x)
        return _resize(self.decode_head(self.backbone(x)), x.shape[2:])

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Main and auxiliary logits, both (N, K, H, W) at input resolution."""
        _check_images(x)
        feats = self.backbone(x)
        size = x.shape[2:]
        main = _resize(self.decode_head(feats), size)
        aux = _resize(self.auxiliary_head(feats[self.aux_in_index]), size)
        return main, aux


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _check_images(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(x.shape)}")


def _init_head(module: nn.Module) -> None:
    """Normal(0, 0.02) conv weights, zero biases (BatchNorm keeps PyTorch's defaults)."""
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
