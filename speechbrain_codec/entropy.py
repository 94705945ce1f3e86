"""Entropy coding of tokens: a per-codebook frequency model and constriction's range coder.

The model (``entropy_model.json`` in a checkpoint folder, written by ``speechbrain-codec
fit-entropy``) holds token counts per codebook measured on training data; probabilities are
``(count + smoothing) / total``, so every token stays codable. An entropy-coded ``.sbc`` file
carries the model's 64-bit hash in its header, and decoding refuses a different model.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from .utils import CodecError, atomic_write_json

__all__ = ["TokenModel", "ENTROPY_MODEL"]

ENTROPY_MODEL = "entropy_model.json"


class TokenModel:
    """Independent categorical model per codebook (order-0).

    Example
    -------
    >>> m = TokenModel.fit([np.array([[0], [0], [0], [1]])], [4], smoothing=0.5)
    >>> data = m.encode(np.array([[0], [0], [1], [0]]))
    >>> m.decode(data, 4).ravel().tolist()
    [0, 0, 1, 0]
    """

    def __init__(self, counts: list[np.ndarray], smoothing: float = 1.0) -> None:
        self.counts = [np.asarray(c, dtype=np.float64) for c in counts]
        self.smoothing = float(smoothing)
        self.codebook_sizes = [len(c) for c in self.counts]
        self._models = None

    @classmethod
    def fit(cls, toks: Iterable[np.ndarray], codebook_sizes: list[int], smoothing: float = 1.0) -> "TokenModel":
        """Count tokens ``[T, K]`` of many utterances."""
        counts = [np.zeros(n) for n in codebook_sizes]
        for t in toks:
            t = np.asarray(t).reshape(-1, len(codebook_sizes))
            for k, n in enumerate(codebook_sizes):
                counts[k] += np.bincount(t[:, k], minlength=n)[:n]
        return cls(counts, smoothing)

    def probabilities(self, k: int) -> np.ndarray:
        p = self.counts[k] + self.smoothing
        return p / p.sum()

    @property
    def hash(self) -> str:
        h = hashlib.sha256(json.dumps([self.smoothing, [c.tolist() for c in self.counts]]).encode())
        return h.hexdigest()[:16]

    def ideal_bits(self, toks: np.ndarray) -> float:
        """Cross-entropy of ``toks [T, K]`` under the model, in bits."""
        toks = np.asarray(toks)
        return float(-sum(np.log2(self.probabilities(k)[toks[:, k]]).sum() for k in range(toks.shape[1])))

    def _categoricals(self):
        if self._models is None:
            import constriction

            self._models = [
                constriction.stream.model.Categorical(self.probabilities(k).astype(np.float64), perfect=False)
                for k in range(len(self.counts))
            ]
        return self._models

    def encode(self, toks: np.ndarray) -> bytes:
        """Range-code ``toks [T, K]`` (codebook streams one after the other)."""
        import constriction

        toks = np.asarray(toks)
        enc = constriction.stream.queue.RangeEncoder()
        for k, model in enumerate(self._categoricals()):
            if toks.shape[0]:
                enc.encode(np.ascontiguousarray(toks[:, k], dtype=np.int32), model)
        return enc.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, n_frames: int) -> np.ndarray:
        """Inverse of :meth:`encode`."""
        import constriction

        if len(data) % 4:
            raise ValueError("entropy-coded payload is not a whole number of 32-bit words")
        dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        out = np.zeros((n_frames, len(self.counts)), dtype=np.int64)
        for k, model in enumerate(self._categoricals()):
            if n_frames:
                out[:, k] = dec.decode(model, n_frames)
        return out

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, {"smoothing": self.smoothing, "hash": self.hash,
                                 "counts": [c.astype(np.int64).tolist() for c in self.counts]})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TokenModel":
        path = Path(path)
        try:
            blob = json.loads(path.read_text())
            return cls([np.array(c) for c in blob["counts"]], blob["smoothing"])
        except FileNotFoundError:
            raise CodecError(f"{path}: no entropy model; fit one with `speechbrain-codec fit-entropy`") from None
        except (ValueError, KeyError) as err:
            raise CodecError(f"{path}: not an entropy model ({err})") from None
