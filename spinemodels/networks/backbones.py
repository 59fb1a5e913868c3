"""Backbones from timm by name and UNets from segmentation-models-pytorch, with clear errors."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spinemodels.errors import ConfigError


@dataclass
class SliceTransformerConfig:
    """The model section shared by the networks that run a timm backbone on every slice and a transformer
    across the slices (the slice finder, the graders); each task adds its own fields and default backbone."""

    backbone: str = "densenet121"  # timm model name, run on every slice (1 channel)
    pretrained: bool = True  # ImageNet weights (cache or network); false trains from scratch
    d_model: int = 256  # width of the transformer across slices
    n_layers: int = 4  # transformer layers
    n_heads: int = 8  # attention heads
    dropout: float = 0.1  # transformer dropout


_OFFLINE_HINT = ("weights for {what} are not available offline ({error}); set `pretrained: false` to train "
                 "from scratch, or put the weights in the torch/Hugging Face cache (HF_HOME, TORCH_HOME)")


def create_backbone(name: str, *, pretrained: bool, in_chans: int) -> torch.nn.Module:
    """A timm model without its classifier (``num_classes=0``): (B, in_chans, H, W) -> (B, num_features)."""
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        raise ConfigError(f"model.backbone: timm has no model {name!r}; similar names: {', '.join(close)}")
    try:
        return timm.create_model(name, pretrained=pretrained, in_chans=in_chans, num_classes=0)
    except (OSError, RuntimeError, ValueError) as error:
        if not pretrained:
            raise
        raise ConfigError(_OFFLINE_HINT.format(what=f"timm model {name!r}", error=type(error).__name__)) \
            from error


def feature_size(backbone: torch.nn.Module) -> int:
    """Width of the pooled features a timm backbone returns (``head_hidden_size`` when it has a head conv)."""
    size = getattr(backbone, "head_hidden_size", None) or backbone.num_features
    return int(size)


def create_unet(encoder: str, *, pretrained: bool, in_channels: int, classes: int, encoder_depth: int = 5,
                decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)) -> torch.nn.Module:
    """A segmentation-models-pytorch Unet: (B, in_channels, H, W) -> (B, classes, H, W) logits.

    ``encoder``: an smp encoder name (``efficientnet-b2``, ``resnet18``, ``tu-<timm name>`` ...).
    """
    import segmentation_models_pytorch as smp

    if len(decoder_channels) != encoder_depth:
        raise ConfigError(f"model.decoder_channels needs {encoder_depth} values (model.encoder_depth), "
                          f"got {list(decoder_channels)}")
    try:
        return smp.Unet(encoder_name=encoder, encoder_weights="imagenet" if pretrained else None,
                        in_channels=in_channels, classes=classes, encoder_depth=encoder_depth,
                        decoder_channels=list(decoder_channels))
    except KeyError as error:
        raise ConfigError(f"model.encoder: segmentation-models-pytorch has no encoder {encoder!r} "
                          f"({error}); see smp.encoders.get_encoder_names() or use tu-<timm name>") from None
    except (OSError, RuntimeError, ValueError) as error:
        if not pretrained:
            raise
        raise ConfigError(_OFFLINE_HINT.format(what=f"smp encoder {encoder!r}", error=type(error).__name__)) \
            from error
