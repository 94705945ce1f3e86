"""Neural-network building blocks shared by several lobes."""

from .convnext import ConvNeXtBlock, ConvNeXtStack
from .streaming import StreamCache, pad_left

__all__ = ["ConvNeXtBlock", "ConvNeXtStack", "StreamCache", "pad_left"]
