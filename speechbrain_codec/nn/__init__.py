"""Neural-network building blocks shared by several lobes."""

from .convnext import ConvNeXtBlock, ConvNeXtStack
from .feedforward import FeedForward
from .streaming import StreamCache, pad_left, stream_conv1d

__all__ = ["ConvNeXtBlock", "ConvNeXtStack", "FeedForward", "StreamCache", "pad_left", "stream_conv1d"]
