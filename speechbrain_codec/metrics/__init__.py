"""Metrics: intelligibility (WER/dWER), intrusive quality (PESQ, STOI), bitrate."""

from .asr import PocketsphinxASR, normalize_text, word_errors
from .intrusive import align_delay, pesq_score, stoi_score

__all__ = [
    "PocketsphinxASR",
    "normalize_text",
    "word_errors",
    "align_delay",
    "pesq_score",
    "stoi_score",
]
