"""Duration-penalised dynamic-programming quantization (DPDP; Kamper, 2022; DP-SLM).

For features ``x [T, D]`` and a codebook ``c [K, D]``, DPDP finds the segmentation of the frames
into runs with one unit each that minimises

    sum_t ||x_t - c_{u_t}||^2  +  lambda * (number of segments)

(the reference writes the same objective as a per-segment cost ``sum d - lambda * (L - 1)``).
``num_neighbors = N`` restricts every frame to its N nearest codewords.

The reference (github.com/nicolvisser/dpdp) scans every segment start for every end: O(T^2 K)
time. The same optimum follows from a running minimum per codeword: the best cost of a prefix
whose last segment has unit k and is still open either extends that segment (``+ d[t, k] -
lambda``) or starts it here from the best prefix (``alpha[t] + d[t, k]``). That is O(T K) time.
Each codeword also keeps the first frame of its open segment, so the best prefix at every frame
knows its unit (``gamma``) and where its last segment starts (``beta``): backtracking needs
these two integers per frame, O(T) memory, and distances are computed in chunks of frames.
Ties follow the reference's rule (its spec, "Tie-breaking": both minima take the first
index): among the (start, codeword) pairs that attain the minimum, the earliest start (longest
last segment), then the lowest codeword index (ties between extending and starting keep the
earlier start); tested against a first-index O(T^2 K) recursion on integer data, where ties are
exact.

Speed (``benchmarks/dpdp_speed.py``): the distances are one float32 GEMM per chunk
(``|c|^2 - 2 x c^T``; the kernel adds ``|x|^2`` and clamps at 0 in float32, the values torch.cdist's
matrix-product form gives, bit for bit), the neighbour limit is a numpy partition of the GEMM
output (order statistics commute with that monotone map), and the recursion is one numba kernel
over the chunk for all penalties at once (:func:`dpdp_many`: the λ grid shares the distances;
:func:`dpdp_batch`: short utterances share one GEMM). The GEMM is the floor (92 G multiply-adds
per hour of 50 Hz frames at K = 500, D = 1024).
Units equal the reference's on all 56 golden cases (``tests/unit/test_dpdp.py``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import QuantizerOutput
from .vq import KMeansQuantizer

__all__ = ["dpdp", "dpdp_batch", "dpdp_many", "dpdp_reference", "dedup", "DPDPQuantizer"]


def _gemm_part(x: torch.Tensor, codebook: torch.Tensor, cnorm: torch.Tensor | None = None):
    """The matrix-product part of the squared distances: ``g = |c|^2 - 2 x c^T`` ``[T, K]`` and
    ``|x|^2`` ``[T]`` (float32; one GEMM). ``d = max(g + |x|^2, 0)`` (float32) is torch.cdist's
    matrix-product form; the DP kernels finish it, so the values are the ones :func:`_distances`
    gives, bit for bit."""
    x = x.float()
    if cnorm is None:
        codebook = codebook.float()
        cnorm = (codebook * codebook).sum(1)
    g = torch.addmm(cnorm[None], x, codebook.float().T, alpha=-2.0)
    return g.numpy(), (x * x).sum(1).numpy()


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


# ---------------------------------------------------------------------------------------------
# The recursion over one chunk of frames, for L penalties at once (they share the distances).
#
# State per penalty l and codeword k: ``open_cost[l, k]`` (best cost of a prefix whose open last
# segment has unit k) and ``seg_start[l, k]`` (the first frame of that segment). Outputs per
# frame t: ``gamma[l, t]`` (the unit of the best prefix ending at t) and ``beta[l, t]`` (the first
# frame of its last segment), which is all backtracking needs: O(T) memory, no bit matrix.
# ---------------------------------------------------------------------------------------------
def _limits(g: np.ndarray, xn: np.ndarray, n_keep: int) -> np.ndarray:
    """Per frame, the distance of its ``n_keep``-th nearest codeword (+inf: no restriction).

    Taken on ``g`` (before ``|x|^2`` is added): ``v -> max(fl32(v + |x|^2), 0)`` is
    non-decreasing, so the k-th smallest distance is that map of the k-th smallest ``g``, bit for
    bit; numpy's partition (introselect) is ~20x faster than torch.topk here."""
    if n_keep >= g.shape[1]:
        return np.full(g.shape[0], np.inf, dtype=np.float32)
    kth = np.partition(g, n_keep - 1, axis=1)[:, n_keep - 1]
    return np.maximum(kth + xn, np.float32(0.0))


def _dp_chunk_numpy(g, xn, limit, lams, open_cost, seg_start, t0, alpha, gamma, beta):
    """Vectorised over codewords, a Python loop over frames (the fallback without numba)."""
    d = _allowed(np.maximum(g + xn[:, None], np.float32(0.0)), limit)  # float32 as torch's add_ / clamp_
    big = np.iinfo(np.int64).max
    for l, lam in enumerate(lams):
        oc, ss = open_cost[l], seg_start[l]
        a = alpha[l]
        for i in range(d.shape[0]):
            extend = oc + (d[i] - lam)
            start = a + d[i]
            is_start = start < extend  # ties keep the earlier start (longer segment)
            np.minimum(extend, start, out=oc)
            ss[is_start] = t0 + i
            # among the codewords at the minimum: the earliest start, then the lowest index
            k = np.where(oc == oc.min(), ss, big).argmin()
            gamma[l, t0 + i], beta[l, t0 + i] = k, ss[k]
            a = oc[k]
        alpha[l] = a


def _dp_chunk_loops(g, xn, limit, lams, open_cost, seg_start, t0, alpha, gamma, beta):  # compiled by numba
    """Plain loops over frames and codewords, fused with the end of the distance computation
    (``d = max(g + |x|^2, 0)`` in float32, then float64, +inf beyond the frame's limit); the
    passes over codewords are branch-free so that LLVM vectorises them."""
    n, n_codes = g.shape
    allowed = np.empty(n_codes, dtype=np.float64)
    for i in range(n):
        xi, li = xn[i], limit[i]
        for k in range(n_codes):
            v = np.float32(g[i, k] + xi)
            v = v if v > 0 else np.float32(0.0)
            allowed[k] = np.float64(v) if v <= li else np.inf
        t = t0 + i
        for l in range(lams.shape[0]):
            lam, a = lams[l], alpha[l]
            oc, ss = open_cost[l], seg_start[l]
            for k in range(n_codes):
                dik = allowed[k]
                ext = oc[k] + (dik - lam)
                st = a + dik
                s = st < ext  # ties keep the earlier start (longer segment)
                oc[k] = st if s else ext
                ss[k] = t if s else ss[k]
            best = np.inf
            for k in range(n_codes):
                best = min(best, oc[k])
            # first minimum over (start, codeword): the earliest start, then the lowest index
            best_k, best_s = 0, t + 1
            for k in range(n_codes):
                if oc[k] == best and ss[k] < best_s:
                    best_k, best_s = k, ss[k]
            gamma[l, t], beta[l, t] = best_k, best_s
            alpha[l] = best


def _backtrack_loops(gamma, beta, units):  # compiled by numba
    """``units[beta[t] .. t] = gamma[t]`` from the last frame back (``t = beta[t] - 1``)."""
    t = gamma.shape[0] - 1
    while t >= 0:
        k, s = gamma[t], beta[t]
        for j in range(s, t + 1):
            units[j] = k
        t = s - 1


try:  # numba compiles the plain loops (a few seconds once, then cached on disk)
    import numba

    _dp_chunk = numba.njit(cache=True, nogil=True)(_dp_chunk_loops)
    _backtrack = numba.njit(cache=True, nogil=True)(_backtrack_loops)
except ImportError:  # pragma: no cover - numba is in the "quant" extra
    _dp_chunk = _dp_chunk_numpy
    _backtrack = _backtrack_loops


def _check_inputs(features, codebook):
    features = torch.as_tensor(features).detach().cpu()
    codebook = torch.as_tensor(codebook).detach().cpu()
    if features.dim() != 2 or codebook.dim() != 2 or features.shape[1] != codebook.shape[1]:
        raise ValueError(f"dpdp needs features [T, D] and codebook [K, D], got {list(features.shape)} and {list(codebook.shape)}")
    return features, codebook


def _check_finite(xn: np.ndarray) -> None:
    """NaN / inf features show in ``|x|^2`` (checked per chunk: no ``[T, D]`` mask in memory)."""
    if not np.isfinite(xn).all():
        raise ValueError("dpdp got NaN or infinite features")


def dpdp_many(
    features: torch.Tensor,
    codebook: torch.Tensor,
    lmbdas,
    num_neighbors: int | None = None,
    chunk_frames: int = 2048,
) -> np.ndarray:
    """:func:`dpdp` for several penalties at once ``-> [L, T]`` (int64): the distances (the
    dominant cost, one GEMM) are computed once for all of them.

    Example
    -------
    >>> cb = torch.tensor([[0.0], [10.0]])
    >>> x = torch.tensor([[0.0], [6.0], [0.0], [10.0], [10.0]])
    >>> dpdp_many(x, cb, [0.0, 50.0]).tolist()
    [[0, 1, 0, 1, 1], [0, 0, 0, 1, 1]]
    """
    features, codebook = _check_inputs(features, codebook)
    lams = np.asarray([float(v) for v in np.atleast_1d(np.asarray(lmbdas, dtype=np.float64))], dtype=np.float64)
    n_frames, n_codes = features.shape[0], codebook.shape[0]
    if n_frames == 0:
        return np.zeros((len(lams), 0), dtype=np.int64)
    n_keep = n_codes if num_neighbors is None else max(1, min(int(num_neighbors), n_codes))
    cb = codebook.float()
    cnorm = (cb * cb).sum(1)
    state = _DPState(len(lams), n_frames, n_codes)
    for c0 in range(0, n_frames, chunk_frames):
        g, xn = _gemm_part(features[c0 : c0 + chunk_frames], cb, cnorm)
        _check_finite(xn)
        state.chunk(g, xn, _limits(g, xn, n_keep), lams, c0)
    return state.units()


def dpdp_batch(
    features: list,
    codebook: torch.Tensor,
    lmbdas,
    num_neighbors: int | None = None,
    chunk_frames: int = 4096,
) -> list[np.ndarray]:
    """:func:`dpdp_many` of each utterance of a list ``[T_i, D]`` -> ``[L, T_i]`` each, with the
    distances of short utterances computed together (one GEMM per ``chunk_frames`` frames:
    a LibriSpeech utterance, ~600 frames, alone makes a small, slower matrix product). The
    units are those of :func:`dpdp_many` on each utterance alone.

    Example
    -------
    >>> cb = torch.tensor([[0.0], [10.0]])
    >>> out = dpdp_batch([torch.tensor([[0.0], [6.0], [0.0]]), torch.tensor([[10.0]])], cb, [0.0, 50.0])
    >>> [o.tolist() for o in out]
    [[[0, 1, 0], [0, 0, 0]], [[1], [1]]]
    """
    lams = np.asarray(np.atleast_1d(np.asarray(lmbdas, dtype=np.float64)), dtype=np.float64)
    feats = [_check_inputs(f, codebook)[0] for f in features]
    codebook = torch.as_tensor(codebook).detach().cpu()
    n_codes = codebook.shape[0]
    n_keep = n_codes if num_neighbors is None else max(1, min(int(num_neighbors), n_codes))
    cb = codebook.float()
    cnorm = (cb * cb).sum(1)
    out: list = [None] * len(feats)
    block: list[int] = []

    def flush():
        if not block:
            return
        x = feats[block[0]] if len(block) == 1 else torch.from_numpy(np.concatenate([feats[j].float().numpy() for j in block]))
        g, xn = _gemm_part(x, cb, cnorm)
        _check_finite(xn)
        limit = _limits(g, xn, n_keep)
        a = 0
        for j in block:
            n = feats[j].shape[0]
            out[j] = _dp_utterance(g[a : a + n], xn[a : a + n], limit[a : a + n], lams, n_codes)
            a += n
        block.clear()

    total = 0
    for j, f in enumerate(feats):
        if f.shape[0] == 0:
            out[j] = np.zeros((len(lams), 0), dtype=np.int64)
        elif f.shape[0] >= chunk_frames:
            out[j] = dpdp_many(f, codebook, lams, num_neighbors, chunk_frames)
        else:
            if total + f.shape[0] > chunk_frames:
                flush()
                total = 0
            block.append(j)
            total += f.shape[0]
    flush()
    return out


def _dp_utterance(g, xn, limit, lams, n_codes) -> np.ndarray:
    """The recursion and backtracking over one utterance whose GEMM part is computed."""
    state = _DPState(len(lams), g.shape[0], n_codes)
    state.chunk(g, xn, limit, lams, 0)
    return state.units()


class _DPState:
    """The recursion's state for ``L`` penalties over ``T`` frames and ``K`` codes: per-frame
    back-pointers (``gamma``, ``beta``: O(T), no [T, K] matrix) and the open segments' costs."""

    def __init__(self, n_lams: int, n_frames: int, n_codes: int) -> None:
        self.gamma = np.empty((n_lams, n_frames), dtype=np.int64)
        self.beta = np.empty((n_lams, n_frames), dtype=np.int64)
        self.open_cost = np.full((n_lams, n_codes), np.inf)
        self.seg_start = np.zeros((n_lams, n_codes), dtype=np.int64)
        self.alpha = np.zeros(n_lams)

    def chunk(self, g, xn, limit, lams, t0: int) -> None:
        """Advance over the frames ``t0 .. t0 + len(g)`` (their GEMM part ``g``, norms ``xn``)."""
        _dp_chunk(g, xn, limit, lams, self.open_cost, self.seg_start, t0, self.alpha, self.gamma, self.beta)

    def units(self) -> np.ndarray:
        """Backtrack every penalty's best segmentation ``-> [L, T]`` (int64)."""
        if not np.isfinite(self.alpha).all():
            raise ValueError("dpdp found no finite segmentation")
        units = np.empty(self.gamma.shape, dtype=np.int64)
        for l in range(len(units)):
            _backtrack(self.gamma[l], self.beta[l], units[l])
        return units


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
    return dpdp_many(features, codebook, [lmbda], num_neighbors, chunk_frames)[0]


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
        units = dpdp_batch(list(lats.detach().float().cpu()), self.codebook, [self.lmbda], self.num_neighbors)
        toks = torch.stack([torch.from_numpy(u[0]) for u in units]).to(lats.device).unsqueeze(-1)
        q = self.codebook[toks[..., 0]].to(lats.dtype)
        return QuantizerOutput(lats + (q - lats).detach(), toks, {})

    def measured_bitrate(self, toks: torch.Tensor, frame_rate: float) -> float:
        """Bits per second after deduplication: ``log2 K x units / seconds`` over a batch."""
        n_units = sum(len(dedup(t[..., 0].cpu().numpy())[0]) for t in toks)
        seconds = toks.shape[0] * toks.shape[1] / frame_rate
        return math.log2(self.codebook_sizes[0]) * n_units / seconds
