"""Segmenter: a ViT encoder and a "mask transformer" decoder (Strudel et al. 2021; algorithms §10.4).

Attribute names reproduce the keys of the authors' released checkpoint (``encoder.*`` timm ViT names,
``decoder.{cls_emb,proj_dec,proj_patch,proj_classes,blocks,decoder_norm,mask_norm}``).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from timm.layers import Attention, calculate_drop_path_rates, trunc_normal_
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from ._vit import vit_tokens
from .convnext import center_image

__all__ = ["MaskTransformer", "Segmenter"]


class MaskTransformer(nn.Module):
    """Decoder that jointly processes patch tokens and K learned class embeddings; masks = cosine scores.

    Args:
        num_classes: K.
        d_encoder: width of the encoder tokens.
        d_model: decoder width.
        n_layers: transformer blocks (2 in the paper).
        n_heads: attention heads.
        mlp_ratio: MLP expansion of the blocks.
        dropout: dropout in attention and MLP (0.1 in the paper).
        drop_path_rate: maximal stochastic-depth rate over the decoder blocks (0.0 in the paper).
    """

    def __init__(
        self,
        num_classes: int,
        d_encoder: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads}")
        self.num_classes = num_classes
        self.proj_dec = nn.Linear(d_encoder, d_model)
        self.cls_emb = nn.Parameter(torch.zeros(1, num_classes, d_model))
        rates = cast(list[float], calculate_drop_path_rates(drop_path_rate, n_layers))  # an int depth: one per block
        self.blocks = nn.ModuleList(
            Block(
                d_model,
                n_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=True,
                proj_drop=dropout,
                attn_drop=dropout,
                drop_path=rate,
                norm_layer=nn.LayerNorm,
            )
            for rate in rates
        )
        self.decoder_norm = nn.LayerNorm(d_model)
        scale = d_model**-0.5
        self.proj_patch = nn.Parameter(scale * torch.randn(d_model, d_model))
        self.proj_classes = nn.Parameter(scale * torch.randn(d_model, d_model))
        self.mask_norm = nn.LayerNorm(num_classes)
        self.apply(_init_linear)
        trunc_normal_(self.cls_emb, std=0.02)

    def forward(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Map patch tokens (N, h*w, d_encoder) to class masks (N, K, h, w)."""
        x = self.proj_dec(patches)
        x = torch.cat([x, self.cls_emb.expand(x.shape[0], -1, -1)], dim=1)
        for block in self.blocks:
            x = block(x)
        x = self.decoder_norm(x)
        k = self.num_classes
        feats = F.normalize(x[:, :-k] @ self.proj_patch, dim=-1)
        classes = F.normalize(x[:, -k:] @ self.proj_classes, dim=-1)
        masks = self.mask_norm(feats @ classes.transpose(1, 2))
        return masks.transpose(1, 2).reshape(x.shape[0], k, *grid)


class Segmenter(nn.Module):
    """Segmenter with a timm ViT encoder; accepts any input size (padded, then cropped back).

    ``forward_with_aux`` returns ``(logits, None)``: Segmenter has no auxiliary head. ``center_input`` subtracts
    each image's mean colour before the encoder (:func:`~robseg_lib.models.convnext.center_image`, which says why;
    tiny models only).
    """

    def __init__(
        self,
        encoder: VisionTransformer,
        num_classes: int,
        decoder_layers: int = 2,
        decoder_heads: int | None = None,
        decoder_dim: int | None = None,
        dropout: float = 0.1,
        decoder_drop_path_rate: float = 0.0,
        center_input: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.center_input = center_input
        self.encoder = encoder
        # The ImageNet head is kept for checkpoint compatibility only; freezing it keeps DDP free of unused
        # trainable parameters.
        encoder.head.requires_grad_(False)
        d_encoder = encoder.embed_dim
        self.decoder = MaskTransformer(
            num_classes,
            d_encoder,
            decoder_dim or d_encoder,
            decoder_layers,
            # timm's blocks build an Attention, typed as a plain nn.Module there
            decoder_heads or cast(Attention, encoder.blocks[0].attn).num_heads,
            dropout=dropout,
            drop_path_rate=decoder_drop_path_rate,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, K, H, W) for images (N, 3, H, W) in [0, 1]; H, W arbitrary."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(x.shape)}")
        height, width = x.shape[2:]
        tokens, grid = vit_tokens(self.encoder, center_image(x) if self.center_input else x)
        masks = self.decoder(tokens[:, 1:], grid)
        ph, pw = self.encoder.patch_embed.patch_size
        masks = F.interpolate(masks, size=(grid[0] * ph, grid[1] * pw), mode="bilinear", align_corners=False)
        return masks[:, :, :height, :width]

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Main logits and ``None`` (no auxiliary head)."""
        return self.forward(x), None


def _init_linear(module: nn.Module) -> None:
    """Truncated normal (std 0.02) Linear weights and zero biases; LayerNorm weight 1, bias 0."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
