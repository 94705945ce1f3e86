"""Training support: the generic codec Brain (and its adversarial variant), learning-rate
schedules, codebook fitting."""

from .brain import CodecBrain, WarmupCosine, fit_codebook_if_needed, load_codec_yaml, segment_pipeline
from .gan import GANCodecBrain

__all__ = ["CodecBrain", "GANCodecBrain", "WarmupCosine", "fit_codebook_if_needed", "load_codec_yaml", "segment_pipeline"]
