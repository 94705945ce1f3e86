"""Training support: the generic codec Brain, learning-rate schedules, codebook fitting."""

from .brain import CodecBrain, WarmupCosine, fit_codebook_if_needed, load_codec_yaml, segment_pipeline

__all__ = ["CodecBrain", "WarmupCosine", "fit_codebook_if_needed", "load_codec_yaml", "segment_pipeline"]
