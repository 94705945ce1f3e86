"""Neural-network building blocks shared by several lobes."""

from .convnext import ConvNeXtBlock, ConvNeXtStack

__all__ = ["ConvNeXtBlock", "ConvNeXtStack"]
