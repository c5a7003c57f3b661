"""timm ViT encoder for any input size, and the ViT image classifier used to pretrain it (algorithms §10.4).

The encoder is a plain timm ``VisionTransformer`` (state-dict names as in timm and the robust ViT-S
checkpoint); :func:`vit_tokens` runs it on inputs of any size: zero-pad right/bottom to a multiple of the patch
size and resize the position embedding bilinearly (class token kept), as Segmenter does. Tiny encoders replace
the patchify layer by a convolutional stem (:class:`ConvStemEmbed`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d, resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .convnext import center_image

__all__ = ["ConvStemEmbed", "ViTClassifier", "create_vit_encoder", "resize_pos_embed", "vit_tokens"]


class ConvStemEmbed(nn.Module):
    """Patch embedding by stride-2 3x3 convolutions (each with channels-first LayerNorm and GELU), then a 1x1
    convolution to the token width: the ViT counterpart of ConvNeXt's ConvStem (algorithms §10.1).

    The tiny ViT needs it: with the linear 8x8 patchify layer a 4-block, 64-wide ViT reaches 0.65 held-out
    accuracy on digit classification after 32 epochs and its Segmenter stays near background-only (14 % mIoU
    after 6 epochs); with this stem the classifier reaches 0.91 after 16 epochs. Attribute ``patch_size`` is the
    total stride, as for timm's ``PatchEmbed``; the output is NHWC, as timm's with ``dynamic_img_size``.

    Args:
        embed_dim: token width.
        widths: output channels of the stride-2 convolutions (total stride ``2 ** len(widths)``).
    """

    def __init__(self, embed_dim: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        if not widths:
            raise ValueError("a convolutional stem needs at least one stride-2 convolution")
        layers: list[nn.Module] = []
        channels = 3
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1), LayerNorm2d(width), nn.GELU()]
            channels = width
        layers.append(nn.Conv2d(channels, embed_dim, 1))
        self.proj = nn.Sequential(*layers)
        self.patch_size = (2 ** len(widths),) * 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (N, H / stride, W / stride, embed_dim) of images (N, 3, H, W) with H, W multiples of the stride."""
        return self.proj(x).permute(0, 2, 3, 1)


def create_vit_encoder(
    img_size: int,
    patch_size: int,
    embed_dim: int,
    depth: int,
    num_heads: int,
    drop_path_rate: float = 0.0,
    head_classes: int = 0,
    conv_stem: tuple[int, ...] | None = None,
) -> VisionTransformer:
    """A timm ViT with class token, learned position embedding for ``img_size`` and LayerNorm eps 1e-5.

    Args:
        img_size: side of the square image the position embedding is created for (512 in the paper: 1025 tokens).
        patch_size: patch side (16 for ViT-S/16).
        embed_dim: token width.
        depth: number of transformer blocks.
        num_heads: attention heads.
        drop_path_rate: maximal stochastic-depth rate, linear over the blocks.
        head_classes: width of the (unused) classification Linear ``head`` kept in the state dict
            (1000 for the paper's ImageNet-derived encoder, 0 for none).
        conv_stem: widths of a :class:`ConvStemEmbed` that replaces the patchify layer (``patch_size`` must be
            its total stride); ``None`` keeps timm's linear patch embedding.
    """
    if img_size % patch_size:
        raise ValueError(f"img_size {img_size} must be a multiple of patch_size {patch_size}")
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim {embed_dim} must be divisible by num_heads {num_heads}")
    if conv_stem is not None and 2 ** len(conv_stem) != patch_size:
        raise ValueError(
            f"a conv stem of {len(conv_stem)} stride-2 convolutions has stride {2 ** len(conv_stem)}, "
            f"not patch_size {patch_size}"
        )
    encoder = VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        num_classes=head_classes,
        drop_path_rate=drop_path_rate,
        norm_layer=nn.LayerNorm,
        dynamic_img_size=True,
    )
    if conv_stem is not None:
        encoder.patch_embed = ConvStemEmbed(embed_dim, tuple(conv_stem))
    return encoder


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int = 1) -> torch.Tensor:
    """Bilinearly resize a (1, prefix + G*G, D) position embedding to ``grid``, keeping the prefix tokens."""
    n = pos_embed.shape[1] - num_prefix_tokens
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"position embedding with {n} patch tokens is not a square grid")
    if (side, side) == tuple(grid):
        return pos_embed
    return resample_abs_pos_embed(
        pos_embed,
        new_size=list(grid),
        old_size=[side, side],
        num_prefix_tokens=num_prefix_tokens,
        interpolation="bilinear",
        antialias=False,
        align_corners=False,
    )


def vit_tokens(encoder: VisionTransformer, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Run ``encoder`` on images of any size; return the normalised tokens (N, 1 + h*w, D) and the grid (h, w).

    The image is zero-padded right/bottom to a multiple of the patch size first.
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(x.shape)}")
    cls_token, pos_embed = encoder.cls_token, encoder.pos_embed
    if cls_token is None or pos_embed is None:
        raise ValueError("the encoder needs a class token and an absolute position embedding")
    ph, pw = encoder.patch_embed.patch_size
    pad_h, pad_w = (-x.shape[2]) % ph, (-x.shape[3]) % pw
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    tokens = encoder.patch_embed(x)  # NHWC (dynamic_img_size)
    n, h, w, d = tokens.shape
    tokens = torch.cat([cls_token.expand(n, -1, -1), tokens.reshape(n, h * w, d)], dim=1)
    tokens = encoder.pos_drop(tokens + resize_pos_embed(pos_embed, (h, w)))
    tokens = encoder.norm(encoder.blocks(encoder.norm_pre(tokens)))
    return tokens, (h, w)


class ViTClassifier(nn.Module):
    """Image classifier on a ViT encoder: class token after the final norm, then Linear.

    Its ``backbone.*`` state loads into the ``encoder`` of a Segmenter built from the same configuration.

    Args:
        backbone: the ViT encoder.
        num_classes: number of image classes.
        center_input: subtract each image's mean colour first (:func:`~robseg_lib.models.convnext.center_image`;
            tiny models only).
    """

    def __init__(self, backbone: VisionTransformer, num_classes: int, center_input: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.center_input = center_input
        self.head = nn.Linear(backbone.embed_dim, num_classes)
        trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (N, 3, H, W) to class logits (N, num_classes)."""
        tokens, _ = vit_tokens(self.backbone, center_image(x) if self.center_input else x)
        return self.head(tokens[:, 0])
