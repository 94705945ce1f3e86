"""Training support: the generic codec Brain (and its adversarial variant), learning-rate
schedules, codebook fitting."""

from .brain import CodecBrain, EpochExponential, WarmupCosine, fit_codebook_if_needed, load_codec_yaml, segment_pipeline, with_variant
from .checkpoints import AtomicCheckpointer
from .gan import GANCodecBrain

__all__ = ["AtomicCheckpointer", "CodecBrain", "EpochExponential", "GANCodecBrain", "WarmupCosine", "fit_codebook_if_needed", "load_codec_yaml", "segment_pipeline", "with_variant"]
