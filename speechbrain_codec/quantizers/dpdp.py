"""Duration-penalised dynamic-programming quantization (DPDP; Kamper, 2022; DP-SLM).

For features ``x [T, D]`` and a codebook ``c [K, D]``, DPDP finds the segmentation of the frames
into runs with one unit each that minimises

    sum_t ||x_t - c_{u_t}||^2  +  lambda * (number of segments)

(the reference writes the same objective as a per-segment cost ``sum d - lambda * (L - 1)``).
``num_neighbors = N`` restricts every frame to its N nearest codewords.

The reference (github.com/nicolvisser/dpdp) scans every segment start for every end: O(T^2 K)
time. The same optimum follows from a running minimum per codeword: the best cost of a prefix
whose last segment has unit k and is still open either extends that segment (``+ d[t, k] -
lambda``) or starts it here from the best prefix (``alpha[t] + d[t, k]``). That is O(T K) time;
backtracking needs one bit per frame and codeword ("did the open segment start here?"), stored
packed, so an hour at 50 Hz with K = 500 holds 11 MB of state and distances are computed in
chunks. Ties follow the reference's rule (its spec, "Tie-breaking": both minima take the first
index): among the (start, codeword) pairs that attain the minimum, the earliest start (longest
last segment), then the lowest codeword index. A running minimum alone would pick the lowest
codeword first, so each codeword also keeps the first frame of its open segment (ties between
extending and starting keep the earlier start) and the selection compares it before the index;
tested against a first-index O(T^2 K) recursion on integer data, where ties are exact.
Units equal the reference's on all 56 golden cases (``tests/unit/test_dpdp.py``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import QuantizerOutput
from .vq import KMeansQuantizer

__all__ = ["dpdp", "dpdp_reference", "dedup", "DPDPQuantizer"]


def _distances(x: torch.Tensor, codebook: torch.Tensor, num_neighbors: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Squared Euclidean distances ``[T, K]`` (float32, matrix-product form like torch.cdist's)
    and, per frame, the distance of its N-th nearest codeword (+inf without a restriction):
    farther codewords are not allowed for that frame."""
    x, codebook = x.float(), codebook.float()
    d = torch.addmm((codebook * codebook).sum(1)[None], x, codebook.T, alpha=-2.0)
    d.add_((x * x).sum(1, keepdim=True)).clamp_(min=0.0)
    if num_neighbors is not None and num_neighbors < d.shape[1]:
        limit = torch.topk(d, num_neighbors, dim=1, largest=False).values[:, -1]
    else:
        limit = torch.full((d.shape[0],), float("inf"))
    return d.numpy(), limit.numpy()


def _allowed(d: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """float64 distances with the codewords beyond each frame's limit set to +inf."""
    return np.where(d <= limit[:, None], d.astype(np.float64), np.inf)


def _dp_chunk_numpy(d, limit, lam, open_cost, seg_start, t0, alpha, is_start, gamma):
    """Run the recursion over the frames ``t0 ..`` of one chunk; updates ``open_cost`` (best
    cost of a prefix whose open last segment has unit k) and ``seg_start`` (the first frame of
    that segment) in place and returns the new ``alpha``. ``is_start [n, K]`` and ``gamma [n]``
    are outputs."""
    d = _allowed(d, limit)
    extend, start = np.empty_like(open_cost), np.empty_like(open_cost)
    d_minus = d - lam
    big = np.iinfo(np.int64).max
    for i in range(d.shape[0]):
        np.add(open_cost, d_minus[i], out=extend)
        np.add(d[i], alpha, out=start)
        np.less(start, extend, out=is_start[i])  # ties keep the earlier start (longer segment)
        np.minimum(extend, start, out=open_cost)
        seg_start[is_start[i]] = t0 + i
        # among the codewords at the minimum: the earliest start, then the lowest index
        k = np.where(open_cost == open_cost.min(), seg_start, big).argmin()
        gamma[i] = k
        alpha = open_cost[k]
    return alpha


def _dp_chunk_loops(d, limit, lam, open_cost, seg_start, t0, alpha, is_start, gamma):  # compiled by numba
    n, n_codes = d.shape
    for i in range(n):
        best, best_k, best_s = np.inf, 0, t0 + n
        for k in range(n_codes):
            dik = np.float64(d[i, k]) if d[i, k] <= limit[i] else np.inf
            ext = open_cost[k] + (dik - lam)
            st = alpha + dik
            if st < ext:  # ties keep the earlier start (longer segment)
                is_start[i, k] = True
                seg_start[k] = t0 + i
                ext = st
            else:
                is_start[i, k] = False
            open_cost[k] = ext
            # first minimum over (start, codeword): the earliest start, then the lowest index
            if ext < best or (ext == best and seg_start[k] < best_s):
                best, best_k, best_s = ext, k, seg_start[k]
        gamma[i] = best_k
        alpha = open_cost[best_k]
    return alpha


try:  # numba compiles the plain loops (a few seconds once, then cached on disk)
    import numba

    _dp_chunk = numba.njit(cache=True, nogil=True)(_dp_chunk_loops)
except ImportError:  # pragma: no cover - numba is in the "quant" extra
    _dp_chunk = _dp_chunk_numpy


def dpdp(
    features: torch.Tensor,
    codebook: torch.Tensor,
    lmbda: float,
    num_neighbors: int | None = None,
    chunk_frames: int = 2048,
) -> np.ndarray:
    """Unit id per frame ``[T]`` (int64) minimising distance + ``lmbda`` per segment.

    Parameters
    ----------
    features : torch.Tensor
        ``[T, D]``.
    codebook : torch.Tensor
        ``[K, D]``.
    lmbda : float
        Penalty per segment (0: nearest codeword per frame).
    num_neighbors : int, optional
        Allow each frame only its N nearest codewords (the reference's restriction).
    chunk_frames : int
        Frames whose distances are held in memory at once.

    Example
    -------
    >>> cb = torch.tensor([[0.0], [10.0]])
    >>> x = torch.tensor([[0.0], [6.0], [0.0], [10.0], [10.0]])
    >>> dpdp(x, cb, 0.0).tolist(), dpdp(x, cb, 50.0).tolist()
    ([0, 1, 0, 1, 1], [0, 0, 0, 1, 1])
    """
    features = torch.as_tensor(features).detach().cpu()
    codebook = torch.as_tensor(codebook).detach().cpu()
    if features.dim() != 2 or codebook.dim() != 2 or features.shape[1] != codebook.shape[1]:
        raise ValueError(f"dpdp needs features [T, D] and codebook [K, D], got {list(features.shape)} and {list(codebook.shape)}")
    n_frames, n_codes = features.shape[0], codebook.shape[0]
    if n_frames == 0:
        return np.zeros(0, dtype=np.int64)
    if not torch.isfinite(features).all():
        raise ValueError("dpdp got NaN or infinite features")
    lam = float(lmbda)
    started = np.empty((n_frames, (n_codes + 7) // 8), dtype=np.uint8)  # packed bits
    gamma = np.empty(n_frames, dtype=np.int64)  # best unit of the prefix ending at frame t
    open_cost = np.full(n_codes, np.inf)
    seg_start = np.zeros(n_codes, dtype=np.int64)  # first frame of each codeword's open segment
    alpha = 0.0
    for c0 in range(0, n_frames, chunk_frames):
        d, limit = _distances(features[c0 : c0 + chunk_frames], codebook, num_neighbors)
        is_start = np.empty(d.shape, dtype=np.bool_)
        alpha = _dp_chunk(d, limit, lam, open_cost, seg_start, c0, alpha, is_start, gamma[c0 : c0 + d.shape[0]])
        started[c0 : c0 + d.shape[0]] = np.packbits(is_start, axis=1)
    if not math.isfinite(alpha):
        raise ValueError("dpdp found no finite segmentation")
    units = np.empty(n_frames, dtype=np.int64)
    t = n_frames - 1
    k = gamma[t]
    while t >= 0:
        units[t] = k
        if (started[t, k >> 3] >> (7 - (k & 7))) & 1:
            if t == 0:
                break
            k = gamma[t - 1]
        t -= 1
    return units


def dpdp_reference(
    features: torch.Tensor, codebook: torch.Tensor, lmbda: float, num_neighbors: int | None = None
) -> np.ndarray:
    """The reference's O(T^2 K) recursion, written plainly (for tests and the benchmark).

    For every end t it sums the distances of every window ``[s, t)`` for every codeword, takes
    the best codeword per start and the best start; then it backtracks.
    """
    d = torch.from_numpy(_allowed(*_distances(torch.as_tensor(features), torch.as_tensor(codebook), num_neighbors)))
    n_frames = d.shape[0]
    alpha = torch.zeros(n_frames + 1, dtype=torch.float64)
    beta = torch.zeros(n_frames + 1, dtype=torch.int64)
    gamma = torch.zeros(n_frames + 1, dtype=torch.int64)
    for t in range(1, n_frames + 1):
        window = torch.cumsum(d[:t].flip(0), dim=0).flip(0)  # window[s] = sum d[s:t]
        cost_k, k_best = window.min(dim=1)
        lengths = torch.arange(t, 0, -1, dtype=torch.float64)
        cost = alpha[:t] + cost_k - lmbda * (lengths - 1)
        s = int(cost.argmin())
        alpha[t], beta[t], gamma[t] = cost[s], s, k_best[s]
    units = np.empty(n_frames, dtype=np.int64)
    t = n_frames
    while t > 0:
        units[int(beta[t]) : t] = int(gamma[t])
        t = int(beta[t])
    return units


def dedup(units: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Merge runs: ``[0, 0, 3, 3, 3, 1] -> ([0, 3, 1], [2, 3, 1])`` (units, durations).

    Example
    -------
    >>> u, n = dedup(np.array([0, 0, 3, 3, 3, 1]))
    >>> u.tolist(), n.tolist()
    ([0, 3, 1], [2, 3, 1])
    """
    units = np.asarray(units).reshape(-1)
    if units.size == 0:
        return units.copy(), np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(np.diff(units)) + 1
    starts = np.concatenate([[0], change])
    return units[starts], np.diff(np.concatenate([starts, [units.size]]))


class DPDPQuantizer(KMeansQuantizer):
    """DPDP over a fixed (k-means) codebook, behind the Quantizer interface.

    Tokens are per-frame unit ids ``[B, T, 1]``; ``qlats`` are the codewords. The nominal
    ``bits_per_frame`` is log2 K; after :func:`dedup` the rate is variable:
    log2 K x units per second (see :meth:`measured_bitrate`). ``stream_kind = "units"``: a
    codec sends the deduplicated units (``.sbc`` unit streams), not every frame.

    Parameters
    ----------
    codebook : torch.Tensor or str, optional
        ``[K, D]`` tensor or codebook file; or ``codebook_size`` and ``dim`` to fit one (see
        :class:`KMeansQuantizer`).
    lmbda : float
        Penalty per segment.
    num_neighbors : int, optional
        Neighbour restriction.

    Example
    -------
    >>> q = DPDPQuantizer(torch.randn(16, 4), lmbda=5.0)
    >>> out = q(torch.randn(2, 30, 4))
    >>> out.toks.shape, q.bits_per_frame
    (torch.Size([2, 30, 1]), 4.0)
    """

    stream_kind = "units"

    def __init__(
        self,
        codebook=None,
        lmbda: float = 0.0,
        num_neighbors: int | None = None,
        codebook_size: int | None = None,
        dim: int | None = None,
    ) -> None:
        super().__init__(codebook, codebook_size, dim)
        self.lmbda, self.num_neighbors = float(lmbda), num_neighbors

    def forward(self, lats: torch.Tensor) -> QuantizerOutput:
        self.check_lats(lats)
        self._check_fitted()
        toks = torch.stack([
            torch.from_numpy(dpdp(x, self.codebook, self.lmbda, self.num_neighbors)) for x in lats.detach()
        ]).to(lats.device).unsqueeze(-1)
        q = self.codebook[toks[..., 0]].to(lats.dtype)
        return QuantizerOutput(lats + (q - lats).detach(), toks, {})

    def measured_bitrate(self, toks: torch.Tensor, frame_rate: float) -> float:
        """Bits per second after deduplication: ``log2 K x units / seconds`` over a batch."""
        n_units = sum(len(dedup(t[..., 0].cpu().numpy())[0]) for t in toks)
        seconds = toks.shape[0] * toks.shape[1] / frame_rate
        return math.log2(self.codebook_sizes[0]) * n_units / seconds
