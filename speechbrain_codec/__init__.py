"""speechbrain-codec: SpeechBrain-style recipes and lobes for ultra-low-bitrate semantic codecs.

The lobe library follows one idea: ``sig -> encoder -> quantizer -> toks -> decoder -> sig``.
See ``README.md`` and ``speechbrain_codec.codec.Codec``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
