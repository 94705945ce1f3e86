"""Speaker similarity: cosine similarity of speaker embeddings.

Backends: resemblyzer's GE2E encoder (weights inside the wheel, offline), or a
WavLM / x-vector speaker-verification model through transformers (hub id or local path,
e.g. ``microsoft/wavlm-base-plus-sv``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SpeakerSimilarity"]


class SpeakerSimilarity:
    """``SpeakerSimilarity()(ref, deg, sr) -> cosine similarity`` in [-1, 1].

    Parameters
    ----------
    backend : str
        ``"resemblyzer"`` or a transformers ``AutoModelForAudioXVector`` id / path.
    """

    def __init__(self, backend: str = "resemblyzer") -> None:
        self.backend = backend
        if backend == "resemblyzer":
            from resemblyzer import VoiceEncoder

            self.encoder = VoiceEncoder(device="cpu", verbose=False)
        else:
            from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

            self.extractor = AutoFeatureExtractor.from_pretrained(backend)
            self.model = AutoModelForAudioXVector.from_pretrained(backend).eval()

    def embed(self, sig: np.ndarray, sr: int) -> np.ndarray:
        if self.backend == "resemblyzer":
            from resemblyzer import preprocess_wav

            return self.encoder.embed_utterance(preprocess_wav(np.asarray(sig, dtype=np.float32), sr))
        import torch

        inputs = self.extractor(np.asarray(sig, dtype=np.float32), sampling_rate=sr, return_tensors="pt")
        with torch.no_grad():
            return self.model(**inputs).embeddings[0].numpy()

    def __call__(self, ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> float:
        a, b = self.embed(ref, sr), self.embed(deg, sr)
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
