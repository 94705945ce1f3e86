"""The tiny random models of the tests live in the library (the recipes' debug configurations use them)."""

from speechbrain_codec.bin.tiny_models import *  # noqa: F401,F403
from speechbrain_codec.bin.tiny_models import WHISPER_SPECIALS, tiny_bert, tiny_ctc, tiny_wavlm_sv, tiny_whisper  # noqa: F401
