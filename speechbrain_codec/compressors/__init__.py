"""Compressors and decompressors: change the frame rate and width between encoder, quantizer
and decoder. They expose integer ``downsample`` / ``upsample`` attributes that ``Codec`` uses to
derive its frame rate."""

from .focalnet import (
    DynamicTanh,
    FocalBlock,
    FocalCompressor,
    FocalDecompressor,
    FocalDownScale,
    FocalModulation,
    FocalUpScale,
    Snake,
)
from .resample import ConvDownsample
from .progressive import grow_codec, inherit_weights, progressive_param_groups

__all__ = [
    "ConvDownsample",
    "DynamicTanh",
    "FocalBlock",
    "FocalCompressor",
    "FocalDecompressor",
    "FocalDownScale",
    "FocalModulation",
    "FocalUpScale",
    "Snake",
    "grow_codec",
    "inherit_weights",
    "progressive_param_groups",
]
