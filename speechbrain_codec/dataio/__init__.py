"""Data I/O: audio loading with checks, manifests."""

from .audio import audio_info, load_audio, resample, save_audio
from .manifest import MANIFEST_FIELDS, read_manifest, write_manifest

__all__ = ["audio_info", "load_audio", "save_audio", "resample", "read_manifest", "write_manifest", "MANIFEST_FIELDS"]
