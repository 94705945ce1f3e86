"""Entropy coding of tokens: token models and constriction's range coder.

Tokens of one stream are ``toks [T, K]`` (T frames, K codebooks, ``0 <= toks[:, k] < N_k``).
A token model gives every token a probability; constriction's range coder
(``constriction.stream.queue``) turns the tokens into 32-bit words whose size is close to the
model's cross-entropy (:meth:`ideal_bits`, which leaves out only the coder's 24-bit
fixed-point rounding and its final flush of at most a couple of words). Both models code the K
codebook streams one after the other (codebook 0, all frames; then codebook 1; ...), share one
interface (``fit``, ``encode``, ``decode``, ``ideal_bits``, ``hash``, ``codebook_sizes``,
``save``, ``load``) and are saved as JSON (``entropy_model.json`` in a checkpoint folder,
written by ``speechbrain-codec fit-entropy``) whose ``"type"`` names the model;
:func:`load_token_model` reads either type and :func:`fit_token_model` fits either kind.

``"order0"`` -- :class:`TokenModel`: an independent categorical per codebook,
``(count + smoothing) / total`` from token counts of training data, so every token stays
codable. JSON: ``{"type": "order0", "smoothing": s, "hash": h, "counts": [[N_1 ints], ...]}``;
files without ``"type"`` (written before it existed) are order-0 models too. Hash: SHA-256 of
the JSON text of ``[smoothing, counts]``.

``"ngram"`` -- :class:`NGramTokenModel`: per codebook k, an n-gram over that codebook's own
token sequence, ``P(x_t | x_{t-n+1} .. x_{t-1})`` (default n = 2: on the mini codecs' tokens
orders 3 and 4 gain nothing, see ``benchmarks/entropy_rate.py``); the history before the
first frame is a begin symbol (``BOS = max(N_k)``), so the first frames of an utterance have
their own statistics. With ``cross_codebook=True`` codebook ``k > 0`` also sees ``x_t`` of
codebook ``k - 1`` (same frame) as its most recent context symbol (residual quantizers, a
duration beside its unit). Back-off is interpolated over a chain of contexts, most general
first: the empty context; with classes (``fit(n_classes=C)``, default 16) the class of the most
recent context symbol; then the 1, 2, .., L most recent symbols (the oldest is dropped first).
Every level interpolates with the one before it, and the chain starts from the uniform
distribution over ``N_k``, so every token keeps a non-zero probability (floored at ``2^-20``,
16 times the coder's resolution, so that its 24-bit rounding barely moves any probability and
``ideal_bits`` is what it codes; the floor adds at most ``N_k 2^-20`` to the total):

    P_j(x | h_j) = d_j(h_j, x) / c_j(h_j) + gamma_j(h_j) * P_{j-1}(x | h_{j-1}),
    P_{-1}(x) = 1 / N_k,

and ``P_j = P_{j-1}`` for a context never seen in fitting. ``smoothing="kn"`` (default):
interpolated modified Kneser-Ney (Chen & Goodman 1998). The highest level uses raw counts;
every lower level (the empty and the class context included) uses continuation counts: how
many distinct contexts of the next longer symbol context (the 1-symbol one for the empty and
the class level) were seen with ``x``. Per level, three discounts from that level's
count-of-counts ``n1..n4``: ``Y = n1 / (n1 + 2 n2)``, ``D1 = 1 - 2Y n2/n1``, ``D2 = 2 - 3Y
n3/n2``, ``D3+ = 3 - 4Y n4/n3`` (``Y`` for all three when some ``n_i`` is 0, and 0.5 when n1 or
n2 is), each clamped to ``[0.05, i]``; then ``d = count - D(count)``, ``c(h)`` = the sum of the
counts and ``gamma = (D1 N1(h) + D2 N2(h) + D3+ N3+(h)) / c(h)`` with ``N_i(h)`` the number of
tokens seen i (3: 3 or more) times after ``h``. ``smoothing="wb"``: interpolated Witten-Bell
with raw counts at every level: ``d = count``, ``c = count(h) + types(h)``,
``gamma = types(h) / c``. Token classes (:func:`token_classes`): spectral clustering of the
fitting data's bigram counts (Stratos et al. 2014).
JSON: ``{"type": "ngram", "format": 1, "order": n, "smoothing": "kn", "cross_codebook": false,
"codebook_sizes": [...], "hash": h, "ngrams": [{"context": [L strings], "token": str,
"count": str}, ...], "classes": [N_k-int string per codebook] or null}``: per codebook only
the distinct highest-order n-grams and their counts (every lower level is derived from them),
one string of space-separated integers per column (context columns oldest first; ``L = n -
1``, plus one with ``cross_codebook`` for ``k > 0``). Hash: SHA-256 over the JSON text of
``["ngram", format, order, smoothing, cross_codebook, codebook_sizes, table shapes, classes]``
followed by the tables as little-endian int64.

Both coders compute each position's probability vector with one function
(``NGramTokenModel._row``), in float64 numpy from the integer counts, with element-wise
operations only (no reductions whose order could differ), so encoder and decoder hand
bit-identical vectors to constriction's ``Categorical(perfect=False)`` family; decoding is
sequential (each token's context is made of decoded tokens). Cost: 1-2 ms (wall) per second of
50 Hz audio to encode or to decode one 1000-code stream on a 2-core CPU
(``benchmarks/entropy_rate.py``). An entropy-coded ``.sbc``
file carries the model's hash (16 hex digits over everything that determines the
probabilities) in its header, and decoding refuses a different model.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from .utils import CodecError, atomic_write_json

MAX_CLASSED_CODES = 4096  # token classes are clustered for codebooks up to this size

__all__ = ["TokenModel", "NGramTokenModel", "load_token_model", "fit_token_model", "token_classes", "TOKEN_MODELS",
           "ENTROPY_MODEL"]

ENTROPY_MODEL = "entropy_model.json"
PROB_FLOOR = 2.0 ** -20  # n-gram probabilities are at least this (the coder's precision is 2^-24)
MIN_DISCOUNT = 0.05  # Kneser-Ney discounts are clamped to [MIN_DISCOUNT, i] for count i (3 for 3+)


def _read_blob(path: str | os.PathLike) -> tuple[Path, dict]:
    path = Path(path)
    try:
        blob = json.loads(path.read_text())
    except FileNotFoundError:
        raise CodecError(f"{path}: no entropy model; fit one with `speechbrain-codec fit-entropy`") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise CodecError(f"{path}: not an entropy model ({err})") from None
    if not isinstance(blob, dict):
        raise CodecError(f"{path}: not an entropy model (a JSON {type(blob).__name__}, not an object)")
    return path, blob


def _as_toks(toks: np.ndarray, k: int) -> np.ndarray:
    toks = np.asarray(toks)
    if toks.ndim == 1 and k == 1:
        toks = toks[:, None]
    if toks.ndim != 2 or toks.shape[1] != k:
        raise ValueError(f"tokens must be [T, {k}], got {list(toks.shape)}")
    return toks


class TokenModel:
    """Independent categorical model per codebook (order-0).

    Example
    -------
    >>> m = TokenModel.fit([np.array([[0], [0], [0], [1]])], [4], smoothing=0.5)
    >>> data = m.encode(np.array([[0], [0], [1], [0]]))
    >>> m.decode(data, 4).ravel().tolist()
    [0, 0, 1, 0]
    """

    kind = "order0"

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
        atomic_write_json(path, {"type": self.kind, "smoothing": self.smoothing, "hash": self.hash,
                                 "counts": [c.astype(np.int64).tolist() for c in self.counts]})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TokenModel":
        return cls._from_blob(*_read_blob(path))

    @classmethod
    def _from_blob(cls, path: Path, blob: dict) -> "TokenModel":
        kind = blob.get("type", "order0")  # files from before "type" existed are order-0
        if kind != "order0":
            raise CodecError(f"{path}: a {kind!r} token model, not an order-0 one; read it with load_token_model")
        try:
            counts = [np.array(c, dtype=np.float64) for c in blob["counts"]]
            if not counts or any(c.ndim != 1 or c.size < 2 or not np.isfinite(c).all() or (c < 0).any() for c in counts):
                raise ValueError("counts must be lists of at least 2 non-negative numbers")
            return cls(counts, float(blob["smoothing"]))
        except (ValueError, KeyError, TypeError) as err:
            raise CodecError(f"{path}: not an entropy model ({type(err).__name__}: {err})") from None


class NGramTokenModel:
    """Interpolated n-gram per codebook (Kneser-Ney or Witten-Bell; see the module docstring).

    Parameters
    ----------
    ngrams : list of int64 arrays ``[M_k, L_k + 2]``
        Per codebook, its distinct highest-order n-grams: ``L_k`` context symbols (oldest
        first; ``BOS`` before the first frame), the token, the count (> 0).
    codebook_sizes : list of int
    order : int
        n (1: the empty context only, i.e. a smoothed unigram).
    smoothing : str
        ``"kn"`` (interpolated modified Kneser-Ney) or ``"wb"`` (interpolated Witten-Bell).
    cross_codebook : bool
        Codebook ``k > 0`` also conditions on codebook ``k - 1`` of the same frame.
    classes : list of int arrays ``[N_k]``, optional
        A class per token of every codebook (``fit(n_classes=C)`` makes them): adds the back-off
        level "class of the most recent context symbol" between the empty context and it.

    Example
    -------
    >>> toks = np.array([[0], [0], [1], [1], [0], [0], [1], [1]])
    >>> m = NGramTokenModel.fit([toks], [3], order=2)
    >>> m.decode(m.encode(toks), 8).ravel().tolist()
    [0, 0, 1, 1, 0, 0, 1, 1]
    >>> bool(m.ideal_bits(toks) < TokenModel.fit([toks], [3]).ideal_bits(toks))
    True
    """

    kind = "ngram"
    FORMAT = 1
    BLOCK = 512  # positions whose probability rows are built and range-coded in one call

    def __init__(self, ngrams: list[np.ndarray], codebook_sizes: list[int], order: int = 2,
                 smoothing: str = "kn", cross_codebook: bool = False, classes: list[np.ndarray] | None = None) -> None:
        self.codebook_sizes = [int(n) for n in codebook_sizes]
        self.order, self.smoothing, self.cross_codebook = int(order), str(smoothing), bool(cross_codebook)
        if self.order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        if self.smoothing not in ("kn", "wb"):
            raise ValueError(f"smoothing must be 'kn' or 'wb', got {smoothing!r}")
        if not self.codebook_sizes or min(self.codebook_sizes) < 2:
            raise ValueError(f"codebook sizes must be >= 2, got {self.codebook_sizes}")
        if len(ngrams) != len(self.codebook_sizes):
            raise ValueError(f"{len(ngrams)} n-gram tables for {len(self.codebook_sizes)} codebooks")
        self.radix = max(self.codebook_sizes) + 1  # context symbols 0..max(N)-1 and BOS
        self.bos = self.radix - 1
        self.classes = None
        if classes is not None:
            self.classes = [np.asarray(c, dtype=np.int64).reshape(-1) for c in classes]
            if len(self.classes) != len(self.codebook_sizes) or any(
                    c.size != n or (c < 0).any() for c, n in zip(self.classes, self.codebook_sizes)):
                raise ValueError("classes must give every token of every codebook a class >= 0")
        self.ngrams = []
        for k, table in enumerate(ngrams):
            width = self.context_length(k) + 2
            table = np.asarray(table, dtype=np.int64).reshape(-1, width)
            if self.radix ** (width - 2) >= 2 ** 62:
                raise ValueError(f"order {self.order} contexts over {self.radix} symbols overflow 64-bit keys")
            ctx, tok, cnt = table[:, :-2], table[:, -2], table[:, -1]
            if (cnt <= 0).any() or (tok < 0).any() or (tok >= self.codebook_sizes[k]).any() \
                    or (ctx < 0).any() or (ctx > self.bos).any():
                raise ValueError(f"codebook {k}: n-gram table has a token, context symbol or count out of range")
            self.ngrams.append(table)
        self._class_of = [self._class_map(k) for k in range(len(self.codebook_sizes))]
        self._levels = [self._build_levels(k) for k in range(len(self.codebook_sizes))]
        self._hash = None

    # ------------------------------------------------------------------ fitting
    def context_length(self, k: int) -> int:
        """Context symbols of codebook ``k`` at the highest order."""
        return self.order - 1 + (1 if self.cross_codebook and k > 0 else 0)

    @classmethod
    def fit(cls, toks: Iterable[np.ndarray], codebook_sizes: list[int], order: int = 2, smoothing: str = "kn",
            cross_codebook: bool = False, n_classes: int = 16) -> "NGramTokenModel":
        """Count the highest-order n-grams of many utterances ``[T, K]``; with ``n_classes``,
        also cluster every codebook's tokens into that many classes (:func:`token_classes`)."""
        sizes = [int(n) for n in codebook_sizes]
        bos = max(sizes)
        rows: list[list[np.ndarray]] = [[] for _ in sizes]
        # classes need a dense bigram table: codebooks beyond MAX_CLASSED_CODES codes keep one
        # class per token (a 65536-code codebook would need 32 GiB)
        bigrams = [np.zeros((n + 1, n), dtype=np.int64) if n <= MAX_CLASSED_CODES else None
                   for n in sizes] if n_classes else None
        for t in toks:
            t = np.asarray(t, dtype=np.int64).reshape(-1, len(sizes))
            for k, n in enumerate(sizes):
                if ((t[:, k] < 0) | (t[:, k] >= n)).any():
                    raise ValueError(f"codebook {k}: tokens outside 0..{n - 1}")
                if t.shape[0]:
                    rows[k].append(cls._contexts(t, k, order, cross_codebook, bos))
                    if bigrams is not None and bigrams[k] is not None:
                        np.add.at(bigrams[k], (np.r_[n, t[:-1, k]], t[:, k]), 1)  # row n: BOS
        tables = []
        for k in range(len(sizes)):
            width = order - 1 + (1 if cross_codebook and k > 0 else 0) + 1
            allrows = np.concatenate(rows[k]) if rows[k] else np.zeros((0, width), dtype=np.int64)
            uniq, counts = np.unique(allrows, axis=0, return_counts=True)
            tables.append(np.concatenate([uniq.reshape(-1, width), counts[:, None]], axis=1))
        classes = [token_classes(b, n_classes) if b is not None else np.arange(n, dtype=np.int64)
                   for b, n in zip(bigrams, sizes)] if bigrams is not None else None
        return cls(tables, sizes, order, smoothing, cross_codebook, classes)

    @staticmethod
    def _contexts(t: np.ndarray, k: int, order: int, cross: bool, bos: int) -> np.ndarray:
        """``[T, L + 1]``: each position's context symbols (oldest first) and its token."""
        seq = t[:, k]
        cols = []
        for i in range(order - 1, 0, -1):  # x_{t-i}, oldest first
            col = np.full(seq.shape, bos, dtype=np.int64)
            col[i:] = seq[:-i]
            cols.append(col)
        if cross and k > 0:
            cols.append(t[:, k - 1])
        cols.append(seq)
        return np.stack(cols, axis=1)

    @staticmethod
    def _discounts(cnt: np.ndarray) -> tuple[float, float, float]:
        """Modified Kneser-Ney discounts (D1, D2, D3+) from the count-of-counts."""
        n = [int((cnt == i).sum()) for i in (1, 2, 3, 4)]
        y = n[0] / (n[0] + 2 * n[1]) if n[0] and n[1] else 0.5
        if all(n):
            d = (1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2])
        else:
            d = (y, y, y)
        # at least MIN_DISCOUNT, so every context leaves mass to the lower orders (and the
        # uniform at the bottom): every token keeps a non-zero probability
        return tuple(float(min(max(v, MIN_DISCOUNT), i + 1.0)) for i, v in enumerate(d))

    def _class_map(self, k: int) -> np.ndarray | None:
        """Class of every context symbol ``0..BOS`` that is most recent for codebook ``k`` (a
        token of codebook k, or of k - 1 with ``cross_codebook``); BOS has a class of its own."""
        if self.classes is None or self.context_length(k) == 0:
            return None
        src = self.classes[k - 1 if self.cross_codebook and k > 0 else k]
        out = np.full(self.radix, int(src.max()) + 1, dtype=np.int64)
        out[: src.size] = src
        return out

    def _build_levels(self, k: int) -> list[dict]:
        """Back-off levels of codebook ``k``, most general first: the empty context, (the class
        of the most recent symbol), the 1 .. L most recent symbols. Each holds sorted context
        keys, CSR tokens with their probability terms ``d / c``, and ``gamma`` per context."""
        table, L, R = self.ngrams[k], self.context_length(k), self.radix
        ctx_cols, tok, cnt = table[:, :-2], table[:, -2], table[:, -1]
        key = np.zeros(table.shape[0], dtype=np.int64)
        for i in range(L):  # most recent symbol in the lowest digit
            key += ctx_cols[:, L - 1 - i] * (R ** i)
        key, tok, cnt = self._merge(key, tok, cnt, sum_counts=True)  # (already distinct)
        by_length = {L: (key, tok, cnt)}
        for j in range(L - 1, -1, -1):  # drop the oldest symbol: merge the pairs that now coincide
            key, tok, cnt = self._merge(key % (R ** j), tok, cnt, sum_counts=self.smoothing == "wb")
            by_length[j] = (key, tok, cnt)
        levels = [self._level(*by_length[0])]
        if self._class_of[k] is not None:  # derived from the 1-symbol contexts, like the empty one
            key1, tok1, cnt1 = by_length[1]
            levels.append(self._level(*self._merge(self._class_of[k][key1], tok1, cnt1, self.smoothing == "wb")))
        levels += [self._level(*by_length[j]) for j in range(1, L + 1)]
        return levels

    @staticmethod
    def _merge(key, tok, cnt, sum_counts: bool):
        """Sort by (key, token) and merge equal pairs: sum their counts (raw counts) or count
        them (Kneser-Ney continuation counts: distinct longer contexts)."""
        order = np.lexsort((tok, key))
        key, tok, cnt = key[order], tok[order], cnt[order]
        first = np.ones(key.size, dtype=bool)
        first[1:] = (key[1:] != key[:-1]) | (tok[1:] != tok[:-1])
        starts = np.flatnonzero(first)
        if sum_counts:
            cnt = np.add.reduceat(cnt, starts) if starts.size else cnt[:0]
        else:
            cnt = np.diff(np.append(starts, key.size))
        return key[starts], tok[starts], cnt

    def _level(self, key: np.ndarray, tok: np.ndarray, cnt: np.ndarray) -> dict:
        new = np.ones(key.size, dtype=bool)
        new[1:] = key[1:] != key[:-1]
        starts = np.flatnonzero(new)
        ptr = np.append(starts, key.size)
        cnt = cnt.astype(np.float64)
        total = np.add.reduceat(cnt, starts) if starts.size else cnt[:0]
        ctx_of = np.repeat(np.arange(starts.size), np.diff(ptr))
        if self.smoothing == "kn":
            d1, d2, d3 = self._discounts(cnt)
            disc = np.where(cnt == 1, d1, np.where(cnt == 2, d2, d3))
            mass = np.add.reduceat(disc, starts) if starts.size else disc
            val = (cnt - disc) / total[ctx_of]
            gamma = mass / total
        else:
            types = np.diff(ptr).astype(np.float64)
            val = cnt / (total + types)[ctx_of]
            gamma = types / (total + types)
        return {"keys": key[starts], "ptr": ptr, "tok": tok, "val": val, "gamma": gamma}

    # ------------------------------------------------------------------ probabilities
    def _row(self, k: int, hist: list[int]) -> np.ndarray:
        """Probability vector ``[N_k]`` of the next token of codebook ``k`` after ``hist``
        (its context symbols, oldest first; length ``context_length(k)``). The only place
        probabilities are computed: encoder, decoder and :meth:`ideal_bits` all call it."""
        n = self.codebook_sizes[k]
        p = np.full(n, 1.0 / n)
        keys, key, R = [0], 0, self.radix
        if self._class_of[k] is not None:
            keys.append(int(self._class_of[k][hist[-1]]))
        for j in range(1, len(hist) + 1):
            key += hist[-j] * R ** (j - 1)
            keys.append(key)
        for key, level in zip(keys, self._levels[k]):
            known = level["keys"]
            i = int(np.searchsorted(known, key))
            if i == known.size or known[i] != key:
                continue  # unseen context: P_j = P_{j-1}
            a, b = level["ptr"][i], level["ptr"][i + 1]
            p *= level["gamma"][i]
            p[level["tok"][a:b]] += level["val"][a:b]
        # the range coder's probabilities are 24-bit fixed point: below PROB_FLOOR it could not
        # represent ours (and ideal_bits would not be what it codes); the sum stays ~1
        return np.maximum(p, PROB_FLOOR, out=p)

    def _history(self, toks: np.ndarray, k: int, t: int) -> list[int]:
        hist = [int(toks[t - i, k]) if t - i >= 0 else self.bos for i in range(self.order - 1, 0, -1)]
        if self.cross_codebook and k > 0:
            hist.append(int(toks[t, k - 1]))
        return hist

    def _rows(self, toks: np.ndarray, k: int, t0: int, t1: int) -> np.ndarray:
        out = np.empty((t1 - t0, self.codebook_sizes[k]))
        for t in range(t0, t1):
            out[t - t0] = self._row(k, self._history(toks, k, t))
        return out

    def probabilities(self, toks: np.ndarray, k: int) -> np.ndarray:
        """``[T, N_k]``: the coder's probability vector at every position of codebook ``k``
        (normalised, as the coder normalises it)."""
        toks = _as_toks(toks, len(self.codebook_sizes))
        rows = self._rows(toks, k, 0, toks.shape[0])
        return rows / rows.sum(axis=1, keepdims=True)

    def ideal_bits(self, toks: np.ndarray) -> float:
        """Cross-entropy of ``toks [T, K]`` under the coder's probabilities, in bits."""
        toks = _as_toks(toks, len(self.codebook_sizes))
        bits = 0.0
        for k in range(len(self.codebook_sizes)):
            for t0 in range(0, toks.shape[0], self.BLOCK):
                rows = self._rows(toks, k, t0, min(t0 + self.BLOCK, toks.shape[0]))
                p = rows[np.arange(rows.shape[0]), toks[t0 : t0 + rows.shape[0], k]] / rows.sum(axis=1)
                bits -= float(np.log2(p).sum())
        return bits

    @property
    def hash(self) -> str:
        if self._hash is None:
            classes = None if self.classes is None else [c.tolist() for c in self.classes]
            h = hashlib.sha256(json.dumps([self.kind, self.FORMAT, self.order, self.smoothing, self.cross_codebook,
                                           self.codebook_sizes, [t.shape for t in self.ngrams], classes]).encode())
            for table in self.ngrams:
                h.update(np.ascontiguousarray(table, dtype="<i8").tobytes())
            self._hash = h.hexdigest()[:16]
        return self._hash

    # ------------------------------------------------------------------ coding
    def encode(self, toks: np.ndarray) -> bytes:
        """Range-code ``toks [T, K]`` (codebook streams one after the other)."""
        import constriction

        toks = _as_toks(toks, len(self.codebook_sizes))
        for k, n in enumerate(self.codebook_sizes):
            if toks.shape[0] and (toks[:, k].min() < 0 or toks[:, k].max() >= n):
                raise ValueError(f"codebook {k}: tokens outside 0..{n - 1}")
        family = constriction.stream.model.Categorical(perfect=False)
        enc = constriction.stream.queue.RangeEncoder()
        for k in range(len(self.codebook_sizes)):
            for t0 in range(0, toks.shape[0], self.BLOCK):
                t1 = min(t0 + self.BLOCK, toks.shape[0])
                enc.encode(np.ascontiguousarray(toks[t0:t1, k], dtype=np.int32), family, self._rows(toks, k, t0, t1))
        return enc.get_compressed().astype("<u4").tobytes()

    def decode(self, data: bytes, n_frames: int) -> np.ndarray:
        """Inverse of :meth:`encode`: token by token, each context from the tokens decoded."""
        import constriction

        if len(data) % 4:
            raise ValueError("entropy-coded payload is not a whole number of 32-bit words")
        family = constriction.stream.model.Categorical(perfect=False)
        dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
        out = np.zeros((n_frames, len(self.codebook_sizes)), dtype=np.int64)
        for k in range(len(self.codebook_sizes)):
            for t in range(n_frames):
                out[t, k] = dec.decode(family, self._row(k, self._history(out, k, t))[None])[0]
        return out

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        tables = []
        for table in self.ngrams:
            cols = [" ".join(map(str, c.tolist())) for c in table.T]
            tables.append({"context": cols[:-2], "token": cols[-2], "count": cols[-1]})
        atomic_write_json(path, {"type": self.kind, "format": self.FORMAT, "order": self.order,
                                 "smoothing": self.smoothing, "cross_codebook": self.cross_codebook,
                                 "codebook_sizes": self.codebook_sizes, "hash": self.hash, "ngrams": tables,
                                 "classes": None if self.classes is None else
                                 [" ".join(map(str, c.tolist())) for c in self.classes]})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "NGramTokenModel":
        return cls._from_blob(*_read_blob(path))

    @classmethod
    def _from_blob(cls, path: Path, blob: dict) -> "NGramTokenModel":
        if blob.get("type") != cls.kind:
            raise CodecError(f"{path}: a {blob.get('type', 'order0')!r} token model, not an n-gram one; "
                             "read it with load_token_model")
        try:
            if blob["format"] != cls.FORMAT:
                raise ValueError(f"format {blob['format']!r}; this version reads {cls.FORMAT}")
            tables = []
            for t in blob["ngrams"]:
                cols = [np.array(c.split(), dtype=np.int64) for c in [*t["context"], t["token"], t["count"]]]
                if len({c.size for c in cols}) > 1:
                    raise ValueError("n-gram columns of different lengths")
                tables.append(np.stack(cols, axis=1))
            classes = blob.get("classes")
            if classes is not None:
                classes = [np.array(c.split(), dtype=np.int64) for c in classes]
            model = cls(tables, blob["codebook_sizes"], blob["order"], blob["smoothing"], blob["cross_codebook"], classes)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise CodecError(f"{path}: not an entropy model ({type(err).__name__}: {err})") from None
        if blob.get("hash") != model.hash:
            raise CodecError(f"{path}: corrupt entropy model (stored hash {blob.get('hash')}, counts give {model.hash})")
        return model


def token_classes(bigrams: np.ndarray, n_classes: int, kappa: float = 0.5, iterations: int = 30) -> np.ndarray:
    """Cluster the tokens of one codebook by how they are used: ``bigrams [N + 1, N]`` counts
    of (previous, next) token pairs (row N: the begin symbol, left out) -> a class
    ``0..n_classes-1`` per token (``arange(N)`` when ``n_classes >= N``).

    Spectral clustering as Stratos et al. (2014) do for Brown clusters: ``Omega[x, y] =
    count(x, y) / sqrt((count(x .) + kappa) (count(. y) + kappa))``; each token is described by
    its rows of the top-C singular vectors (left and right, scaled by the singular values:
    the token as a predecessor and as a successor; a seeded randomised SVD), normalised to
    unit length; then Lloyd's k-means from a seeded k-means++ start. Only fitting runs it: the
    classes are stored in the model.
    """
    b = np.asarray(bigrams, dtype=np.float64)
    n = b.shape[1]
    if n_classes >= n:
        return np.arange(n, dtype=np.int64)
    b = b[:n]
    omega = b / np.sqrt(np.outer(b.sum(1) + kappa, b.sum(0) + kappa))
    rng = np.random.default_rng(0)
    # top-C singular vectors by a randomised range finder (Halko et al. 2011; 4 power steps)
    q = np.linalg.qr(omega @ rng.standard_normal((n, n_classes + 10)))[0]
    for _ in range(4):
        q = np.linalg.qr(omega @ np.linalg.qr(omega.T @ q)[0])[0]
    ub, sv, vt = np.linalg.svd(q.T @ omega, full_matrices=False)
    u, sv, vt = (q @ ub)[:, :n_classes], sv[:n_classes], vt[:n_classes]
    x = np.concatenate([u * sv, vt.T * sv], axis=1)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    centres = [x[rng.integers(n)]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, n_classes):  # k-means++
        centres.append(x[rng.choice(n, p=d2 / d2.sum())] if d2.sum() > 0 else x[rng.integers(n)])
        d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
    c = np.stack(centres)

    def nearest(c):
        return ((c * c).sum(1)[None] - 2 * x @ c.T).argmin(1)

    for _ in range(iterations):
        label = nearest(c)
        for j in range(n_classes):
            if (label == j).any():
                c[j] = x[label == j].mean(0)
    return nearest(c).astype(np.int64)


TOKEN_MODELS = {"order0": TokenModel, "ngram": NGramTokenModel}


def load_token_model(path: str | os.PathLike) -> TokenModel | NGramTokenModel:
    """Read a token model file of any type (no ``"type"``: order-0)."""
    path, blob = _read_blob(path)
    kind = blob.get("type", "order0")
    if kind not in TOKEN_MODELS:
        raise CodecError(f"{path}: unknown token model type {kind!r} (known: {', '.join(TOKEN_MODELS)})")
    return TOKEN_MODELS[kind]._from_blob(path, blob)


def fit_token_model(kind: str, toks_list: Iterable[np.ndarray], codebook_sizes: list[int],
                    **opts) -> TokenModel | NGramTokenModel:
    """Fit a ``kind`` ("order0" or "ngram") token model; ``opts`` go to its ``fit``."""
    if kind not in TOKEN_MODELS:
        raise CodecError(f"unknown token model kind {kind!r} (known: {', '.join(TOKEN_MODELS)})")
    return TOKEN_MODELS[kind].fit(toks_list, codebook_sizes, **opts)
