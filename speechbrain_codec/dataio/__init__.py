"""Data I/O: audio loading with checks, manifests, feature caches (``cache``) and dataset
preparation helpers (``prepare``)."""

from .audio import audio_info, load_audio, resample, save_audio
from .cache import FeatureCache, extract_features
from .manifest import MANIFEST_FIELDS, read_manifest, write_manifest

__all__ = ["audio_info", "load_audio", "save_audio", "resample", "read_manifest", "write_manifest", "MANIFEST_FIELDS",
           "FeatureCache", "extract_features"]
