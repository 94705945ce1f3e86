"""Training support: the generic codec Brain and learning-rate schedules."""

from .brain import CodecBrain, WarmupCosine, load_codec_yaml, segment_pipeline

__all__ = ["CodecBrain", "WarmupCosine", "load_codec_yaml", "segment_pipeline"]
