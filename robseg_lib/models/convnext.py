"""ConvNeXt with ConvStem ("ConvNeXt-CvSt"), built from timm's ConvNeXt stages (algorithms §10.1).

The module names follow timm / Revisiting-AT (``stem.stem.{0,1,3,4}``, ``stages.{j}.downsample.{0,1}``,
``stages.{j}.blocks.{k}.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}``), so the robust ImageNet checkpoints load by
name; the authors' segmentation checkpoints use the original ConvNeXt names and are translated by
:mod:`robseg_lib.models.checkpoints`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import cast

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm, LayerNorm2d, NormMlpClassifierHead, calculate_drop_path_rates, trunc_normal_
from timm.models.convnext import ConvNeXtStage
from torch import nn

__all__ = ["WEIGHT_INITS", "ConvNeXtClassifier", "ConvNeXtCvSt", "ConvStem", "SameDepthwiseConv2d", "center_image"]

_LN_EPS = 1e-6
WEIGHT_INITS = ("paper", "fan_in")
"""Weight initialisations of fresh ConvNeXt/UPerNet modules.

``paper`` is ConvNeXt's (std 0.02), sized for widths 96-768. Every conv of ConvNeXt and UPerNet is followed by
a normalisation, so its output is invariant to the weight scale and Adam's fixed-size steps act as a learning
rate of roughly lr / |w|: with std 0.02 and the tiny models' widths (8-128 channels) that rate is so large that a
tiny ConvNeXt stays at chance on digit classification (10.4 % after 10 epochs). ``fan_in`` keeps PyTorch's
fan-in-scaled defaults, with which the same run reaches 86 %; the tiny models use it.
"""


def center_image(x: torch.Tensor) -> torch.Tensor:
    """Subtract each image's mean colour (per channel, over the spatial positions).

    The tiny models' input layer. DigitScenes images are mostly flat, randomly coloured background. The
    channels-first LayerNorm after the stem's first convolution normalises every position to unit scale, so the
    colour of a flat region becomes as loud as a digit edge, and tiny ConvNeXts sit at chance for many epochs
    (digit classification: 13 % after 8 epochs). Once the image's mean colour is subtracted, the background is
    close to zero and every seed tried learns (77-86 % after 6 epochs). The operation is linear and
    differentiable: attacks see it as part of the model.
    """
    return x - x.mean(dim=(2, 3), keepdim=True)


class ConvStem(nn.Module):
    """Two stride-2 3x3 convolutions with channels-first LayerNorm and GELU (total stride 4).

    Replaces ConvNeXt's 4x4 patchify stem; the robust ImageNet models of Singh et al. (2023) use it.
    Parameterised layers sit at positions 0, 1, 3, 4 of ``self.stem``.
    """

    def __init__(self, in_chans: int, out_chans: int, mid_chans: int | None = None) -> None:
        super().__init__()
        mid = out_chans // 2 if mid_chans is None else mid_chans
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, mid, kernel_size=3, stride=2, padding=1),
            LayerNorm2d(mid, eps=_LN_EPS),
            nn.GELU(),
            nn.Conv2d(mid, out_chans, kernel_size=3, stride=2, padding=1),
            LayerNorm2d(out_chans, eps=_LN_EPS),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (N, C_in, H, W) to (N, C_out, ceil(H/4), ceil(W/4))."""
        return self.stem(x)


class SameDepthwiseConv2d(nn.Conv2d):
    """ConvNeXt's 7x7 depthwise convolution (stride 1, "same" padding) that skips taps that only see padding.

    On a map smaller than the kernel (a tiny model's last stages: 3x3 and 1x1 maps for 48- and 32-pixel
    inputs), every tap farther than ``size - 1`` from the centre multiplies zero padding at every output
    position; those taps are cut from the kernel and the padding shrinks with them. The output is the same,
    but CPU convolution kernels no longer spend time on padding: in a profiled training step of a tiny UPerNet
    (32x32 crops), the backward pass of the 7x7 depthwise convolution over the 1x1 last-stage maps took 18 % of the
    step. Parameter names and shapes are those of ``nn.Conv2d``, so checkpoints load unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise convolution of ``x`` (N, C, H, W), with the kernel cut to what the map can reach."""
        if isinstance(self.padding, str):  # nn.Conv2d keeps "same" / "valid" as given
            raise TypeError(f"SameDepthwiseConv2d needs numeric padding, got {self.padding!r}")
        (ph, pw), (kh, kw) = self.padding, self.kernel_size
        rh, rw = min(ph, x.shape[-2] - 1), min(pw, x.shape[-1] - 1)
        if (rh, rw) == (ph, pw):
            return super().forward(x)
        weight = self.weight[:, :, kh // 2 - rh : kh // 2 + rh + 1, kw // 2 - rw : kw // 2 + rw + 1]
        return F.conv2d(x, weight, self.bias, 1, (rh, rw), 1, self.groups)


def _same_depthwise(conv: nn.Module) -> SameDepthwiseConv2d:
    """A :class:`SameDepthwiseConv2d` holding ``conv``'s parameters."""
    if (
        not isinstance(conv, nn.Conv2d)
        or conv.stride != (1, 1)
        or conv.dilation != (1, 1)
        or conv.padding != tuple(k // 2 for k in conv.kernel_size)
    ):
        raise ValueError(f"expected a stride-1 'same' depthwise convolution, got {conv}")
    kh, kw = conv.kernel_size
    out = SameDepthwiseConv2d(
        conv.in_channels, conv.out_channels, (kh, kw), padding=(kh // 2, kw // 2), groups=conv.groups,
        bias=conv.bias is not None,
    )  # fmt: skip
    out.weight, out.bias = conv.weight, conv.bias
    return out


class ConvNeXtCvSt(nn.Module):
    """ConvNeXt feature extractor with ConvStem returning the four stage outputs (strides 4/8/16/32).

    Args:
        depths: blocks per stage, e.g. (3, 3, 9, 3) for ConvNeXt-T.
        dims: channels per stage, e.g. (96, 192, 384, 768).
        drop_path_rate: maximal stochastic-depth rate, reached linearly over all blocks in order.
        stem_width: hidden width of the ConvStem (default ``dims[0] // 2``: 48 for ConvNeXt-T/S).
        ls_init_value: initial layer-scale value (1.0 in the segmentation models; the checkpoint sets it).
        weight_init: ``"paper"``: ConvNeXt's truncated normal (std 0.02) for conv and linear weights, zero
            biases; ``"fan_in"``: PyTorch's fan-in-scaled defaults (see :data:`WEIGHT_INITS`).
        center_input: subtract each image's mean colour first (:func:`center_image`; tiny models only).
        out_norms: add the per-stage output LayerNorms ``norm0..norm3`` of the segmentation backbone;
            classifiers built on this backbone use ``False`` (the ImageNet models have no such norms).
        in_chans: input channels.
    """

    reductions: tuple[int, ...] = (4, 8, 16, 32)

    def __init__(
        self,
        depths: Sequence[int],
        dims: Sequence[int],
        drop_path_rate: float = 0.0,
        stem_width: int | None = None,
        ls_init_value: float = 1.0,
        weight_init: str = "paper",
        center_input: bool = False,
        out_norms: bool = True,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        _check_weight_init(weight_init)
        depths, dims = tuple(int(d) for d in depths), tuple(int(d) for d in dims)
        if len(depths) != 4 or len(dims) != 4:
            raise ValueError(f"ConvNeXt needs 4 stages, got depths={depths}, dims={dims}")
        if min(depths) < 1 or min(dims) < 1:
            raise ValueError(f"depths and dims must be positive, got depths={depths}, dims={dims}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.depths, self.dims = depths, dims
        self.center_input = center_input
        self.out_channels: tuple[int, ...] = dims
        self.stem = ConvStem(in_chans, dims[0], stem_width)
        # Stage-wise with a list of depths: one list of rates per stage (timm annotates the per-block form too).
        rates = cast(list[list[float]], calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True))
        norm_cf, norm_cl = partial(LayerNorm2d, eps=_LN_EPS), partial(LayerNorm, eps=_LN_EPS)
        stages = []
        prev = dims[0]
        for i, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            stages.append(
                ConvNeXtStage(
                    prev,
                    dim,
                    stride=1 if i == 0 else 2,
                    depth=depth,
                    drop_path_rates=rates[i],
                    ls_init_value=ls_init_value,
                    norm_layer=norm_cf,
                    norm_layer_cl=norm_cl,
                )
            )
            for block in stages[-1].blocks:
                block.conv_dw = _same_depthwise(block.get_submodule("conv_dw"))
            prev = dim
        self.stages = nn.Sequential(*stages)
        for i, dim in enumerate(dims):
            self.add_module(f"norm{i}", LayerNorm2d(dim, eps=_LN_EPS) if out_norms else nn.Identity())
        if weight_init == "paper":
            self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the four (normalised, if ``out_norms``) stage outputs, finest first."""
        x = self.stem(center_image(x) if self.center_input else x)
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            feats.append(getattr(self, f"norm{i}")(x))
        return feats


class ConvNeXtClassifier(nn.Module):
    """Image classifier on a :class:`ConvNeXtCvSt` backbone: global average pool, LayerNorm, Linear.

    Plays the role of the (robust) ImageNet classifier: its ``backbone.*`` state loads into the backbone of a
    UPerNet built from the same configuration.
    """

    def __init__(self, backbone: ConvNeXtCvSt, num_classes: int, weight_init: str = "paper") -> None:
        super().__init__()
        _check_weight_init(weight_init)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.head = NormMlpClassifierHead(
            backbone.out_channels[-1], num_classes, pool_type="avg", norm_layer=partial(LayerNorm2d, eps=_LN_EPS)
        )
        if weight_init == "paper":
            fc = self.head.fc
            if not isinstance(fc, nn.Linear):  # timm's head ends in a Linear unless built with use_conv
                raise TypeError(f"expected the classifier head to end in nn.Linear, got {type(fc).__name__}")
            trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (N, 3, H, W) to class logits (N, num_classes)."""
        return self.head(self.backbone(x)[-1])


def _check_weight_init(weight_init: str) -> None:
    if weight_init not in WEIGHT_INITS:
        raise ValueError(f"unknown weight_init {weight_init!r}; valid: {', '.join(WEIGHT_INITS)}")


def _init_weights(module: nn.Module) -> None:
    """Truncated normal (std 0.02) for conv and linear weights, zero biases (ConvNeXt's fresh init)."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
