"""Segmentation models (timm-based), their registry, and checkpoint loading."""

from ._registry import create_classifier, create_model, list_models, model_config
from ._vit import ConvStemEmbed, ViTClassifier
from .checkpoints import (
    RELEASE_KEY_MAP,
    BackboneLoadReport,
    from_release_keys,
    load_backbone,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    to_release_keys,
)
from .convnext import ConvNeXtClassifier, ConvNeXtCvSt, ConvStem
from .segmenter import MaskTransformer, Segmenter
from .upernet import FCNHead, UperNet, UperNetHead

__all__ = [
    "RELEASE_KEY_MAP",
    "BackboneLoadReport",
    "ConvNeXtClassifier",
    "ConvNeXtCvSt",
    "ConvStem",
    "ConvStemEmbed",
    "FCNHead",
    "MaskTransformer",
    "Segmenter",
    "UperNet",
    "UperNetHead",
    "ViTClassifier",
    "create_classifier",
    "create_model",
    "from_release_keys",
    "list_models",
    "load_backbone",
    "load_checkpoint",
    "model_config",
    "read_checkpoint_meta",
    "save_checkpoint",
    "to_release_keys",
]
