"""Vector quantizers: EMA VQ (Jukebox-style), fixed k-means codebooks, residual VQ."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from .base import Quantizer, QuantizerOutput

__all__ = ["EMAVectorQuantizer", "KMeansQuantizer", "ResidualVQ", "nearest_codes"]


def nearest_codes(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codeword (squared Euclidean) for each row of ``x [N, D]``, in
    float32 even under autocast (a bf16 matmul picks another code for a sizeable share of
    vectors: 18% of 2000 128-d vectors against 64 codes)."""
    with torch.autocast(x.device.type, enabled=False):
        x, codebook = x.float(), codebook.float()
        d = torch.addmm((codebook * codebook).sum(1)[None], x, codebook.T, alpha=-2.0)
    return d.argmin(dim=1)


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class EMAVectorQuantizer(Quantizer):
    """Vector quantizer whose codebook is an exponential moving average of assigned vectors.

    As in Jukebox (Dhariwal et al., 2020) and the LM-loss codec (its spec, §2.3): nearest
    codeword by squared distance; in training mode, per-code EMA of counts and sums (decay
    ``decay``, 0.99 as the spec), centre = sum / count; every step, codes whose EMA count is
    below ``dead_code_threshold`` (1.0) are replaced by random encoder outputs of the batch
    (tiled and jittered with std 0.01/sqrt(D) when the batch has fewer vectors than codes).
    By default (``restart_stats="reset"``) a restarted code's statistics are reset as at
    initialisation (count 1, sum = the new vector), so the stale sum does not drag the code back
    off the data on the next step (with the stale statistics, a codebook initialised far from
    the data collapses to one used code at decay 0.99: tested). ``restart_stats="keep"`` keeps
    them, as Jukebox's and the LM-loss reference's code do (only the centre is replaced). The codebook is initialised on the first training batch, with random
    encoder outputs (``init="random"``) or a few k-means iterations (``init="kmeans"``).
    The loss ``commit`` is ``mean((z - sg(q))^2)``; the codebook gets no gradient; the output
    uses the straight-through estimator. The "initialised" flag is a saved buffer, so a
    resumed or fine-tuned model does not re-initialise its codebook (the LM-loss reference
    does: a bug documented in its spec).

    Under ``torch.distributed`` (e.g. DistributedDataParallel) the per-step counts and sums are
    all-reduced (summed over processes), and the initial codebook and the restart vectors are
    computed by process 0 from the batches of all processes (gathered in rank order) and
    broadcast, so every process holds the same codebook and statistics (tested: bit-identical
    across 2 gloo processes, and equal to one process fed the concatenated batch).

    Parameters
    ----------
    codebook_size : int
        K.
    dim : int
        Vector size D.
    decay : float
        EMA decay.
    dead_code_threshold : float
        EMA count under which a code is restarted (0 disables restarts).
    init : str
        ``"random"``, ``"kmeans"`` or ``"none"`` (keep the random normal initial codebook).
    kmeans_iters : int
        Iterations for ``init="kmeans"``.
    restart_stats : str
        ``"reset"`` (default) or ``"keep"``: what a dead-code restart does to that code's EMA
        count and sum (see above).

    Example
    -------
    >>> vq = EMAVectorQuantizer(32, 8)
    >>> out = vq(torch.randn(2, 10, 8))
    >>> out.toks.shape, vq.bits_per_frame, sorted(out.losses)
    (torch.Size([2, 10, 1]), 5.0, ['commit'])
    """

    def __init__(
        self,
        codebook_size: int,
        dim: int,
        decay: float = 0.99,
        dead_code_threshold: float = 1.0,
        init: str = "random",
        kmeans_iters: int = 10,
        eps: float = 1e-5,
        restart_stats: str = "reset",
    ) -> None:
        super().__init__()
        if init not in ("random", "kmeans", "none"):
            raise ValueError(f"init must be random, kmeans or none, got {init!r}")
        if restart_stats not in ("reset", "keep"):
            raise ValueError(f"restart_stats must be reset or keep, got {restart_stats!r}")
        self.restart_stats = restart_stats
        self.dim, self.codebook_sizes = dim, [codebook_size]
        self.decay, self.threshold, self.init, self.kmeans_iters, self.eps = (
            decay, dead_code_threshold, init, kmeans_iters, eps)
        self.register_buffer("codebook", torch.randn(codebook_size, dim))
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("initialized", torch.tensor(init == "none"))

    # ---------------------------------------------------------------- helpers
    def _random_rows(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` random rows of ``x``, tiled and jittered if ``x`` has fewer than ``n``."""
        if x.shape[0] < n:
            reps = (n + x.shape[0] - 1) // x.shape[0]
            x = x.repeat(reps, 1)
            x = x + torch.randn_like(x) * 0.01 / x.shape[1] ** 0.5
        return x[torch.randperm(x.shape[0], device=x.device)[:n]]

    def _kmeans(self, x: torch.Tensor) -> torch.Tensor:
        centres = self._random_rows(x, self.codebook_sizes[0])
        for _ in range(self.kmeans_iters):
            idx = nearest_codes(x, centres)
            sums = torch.zeros_like(centres).index_add_(0, idx, x)
            counts = torch.bincount(idx, minlength=centres.shape[0]).to(x.dtype)
            centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
        return centres

    def _from_global_batch(self, x: torch.Tensor, fn) -> torch.Tensor:
        """``fn(batch) -> [K, D]`` on the batch of every process: in one process, ``fn(x)``;
        under torch.distributed, process 0 applies ``fn`` to the rank-ordered concatenation of
        all processes' rows and broadcasts the result (the same on every process)."""
        if not _is_distributed():
            return fn(x)
        world = dist.get_world_size()
        n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.int64)
        sizes = [torch.zeros_like(n) for _ in range(world)]
        dist.all_gather(sizes, n)
        sizes = [int(v) for v in sizes]
        padded = x.new_zeros(max(sizes), x.shape[1])
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        if dist.get_rank() == 0:
            out = fn(torch.cat([p[:m] for p, m in zip(parts, sizes)])).contiguous()
        else:
            out = x.new_empty(self.codebook_sizes[0], x.shape[1])
        dist.broadcast(out, 0)
        return out

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        fn = self._kmeans if self.init == "kmeans" else (lambda v: self._random_rows(v, self.codebook_sizes[0]))
        centres = self._from_global_batch(x, fn)
        self.codebook.copy_(centres)
        self.ema_sum.copy_(centres)
        self.ema_count.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, x: torch.Tensor, idx: torch.Tensor) -> None:
        counts = torch.bincount(idx, minlength=self.codebook_sizes[0]).to(x.dtype)
        sums = torch.zeros_like(self.ema_sum).index_add_(0, idx, x)
        if _is_distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.ema_count.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        centres = self.ema_sum / self.ema_count.clamp(min=self.eps)[:, None]
        if self.threshold > 0:
            dead = self.ema_count < self.threshold  # the same on every process (all-reduced)
            if dead.any():
                fresh = self._from_global_batch(x, lambda v: self._random_rows(v, self.codebook_sizes[0]))
                centres = torch.where(dead[:, None], fresh, centres)
                if self.restart_stats == "reset":  # as at initialisation: count 1, sum = the vector
                    self.ema_sum.copy_(torch.where(dead[:, None], fresh, self.ema_sum))
                    self.ema_count.masked_fill_(dead, 1.0)
        self.codebook.copy_(centres)

    # ---------------------------------------------------------------- interface
    def forward(self, lats: torch.Tensor) -> QuantizerOutput:
        self.check_lats(lats)
        x = lats.reshape(-1, self.dim)
        if self.training and not bool(self.initialized):
            self._initialize(x.detach().float())
        idx = nearest_codes(x.detach().float(), self.codebook)
        q = self.codebook[idx].view_as(lats).to(lats.dtype)
        commit = torch.mean((lats - q.detach()) ** 2)
        if self.training:
            self._update(x.detach().float(), idx)
            qlats = lats + (q - lats).detach()
        else:
            qlats = q.detach()
        return QuantizerOutput(qlats, idx.view(*lats.shape[:-1], 1), {"commit": commit})

    def toks_to_qlats(self, toks: torch.Tensor) -> torch.Tensor:
        self.check_toks(toks)
        return self.codebook[toks[..., 0]]


class KMeansQuantizer(Quantizer):
    """Nearest codeword in a fixed codebook (e.g. k-means units of SSL features).

    Parameters
    ----------
    codebook : torch.Tensor or str, optional
        ``[K, D]`` tensor or a file from :func:`speechbrain_codec.quantizers.kmeans.save_codebook`.
    codebook_size, dim : int, optional
        Without ``codebook``: the size of a codebook to be fitted on training features first
        (:meth:`fit`; the recipes' training script does it before training starts).

    Example
    -------
    >>> q = KMeansQuantizer(torch.eye(4))
    >>> q(torch.tensor([[[0.9, 0.1, 0.0, 0.0], [0.0, 0.0, 0.2, 0.7]]])).toks[..., 0].tolist()
    [[0, 3]]
    """

    def __init__(self, codebook=None, codebook_size: int | None = None, dim: int | None = None) -> None:
        super().__init__()
        if isinstance(codebook, str):
            from .kmeans import load_codebook

            codebook = load_codebook(codebook)
        if codebook is None:
            if codebook_size is None or dim is None:
                raise ValueError("give a codebook, or codebook_size and dim of one to fit")
            codebook, fitted = torch.zeros(codebook_size, dim), False
        else:
            fitted = True
        codebook = torch.as_tensor(codebook, dtype=torch.float32)
        self.register_buffer("codebook", codebook)
        self.register_buffer("fitted", torch.tensor(fitted))
        self.dim, self.codebook_sizes = codebook.shape[1], [codebook.shape[0]]

    @property
    def needs_fit(self) -> bool:
        """True until a codebook has been given or fitted."""
        return not bool(self.fitted)

    def fit(self, batches, **kmeans_kwargs) -> dict:
        """Fit the codebook with mini-batch k-means on ``[N, D]`` feature batches."""
        from .kmeans import fit_kmeans

        codebook, info = fit_kmeans(batches, self.codebook_sizes[0], **kmeans_kwargs)
        self.codebook.copy_(torch.from_numpy(codebook))
        self.fitted.fill_(True)
        return info

    def _check_fitted(self) -> None:
        if self.needs_fit:
            raise RuntimeError(f"{type(self).__name__}: the codebook is not fitted yet; call fit() on training features")

    def forward(self, lats: torch.Tensor) -> QuantizerOutput:
        self.check_lats(lats)
        self._check_fitted()
        idx = nearest_codes(lats.reshape(-1, self.dim).detach().float(), self.codebook)
        q = self.codebook[idx].view_as(lats).to(lats.dtype)
        return QuantizerOutput(lats + (q - lats).detach(), idx.view(*lats.shape[:-1], 1), {})

    def toks_to_qlats(self, toks: torch.Tensor) -> torch.Tensor:
        self.check_toks(toks)
        return self.codebook[toks[..., 0]]


class ResidualVQ(Quantizer):
    """Residual vector quantization (SoundStream / EnCodec): stage i quantizes what stages
    0..i-1 left. Tokens ``[B, T, num_stages]``; ``commit`` is the sum over stages.

    Example
    -------
    >>> rvq = ResidualVQ(num_stages=3, codebook_size=64, dim=8)
    >>> x = torch.randn(2, 10, 8)
    >>> _ = rvq(x)  # training mode: initialises and updates the codebooks
    >>> out = rvq.eval()(x)
    >>> out.toks.shape, rvq.bits_per_frame
    (torch.Size([2, 10, 3]), 18.0)
    >>> torch.allclose(rvq.toks_to_qlats(out.toks), out.qlats, atol=1e-5)
    True
    """

    def __init__(self, num_stages: int, codebook_size: int, dim: int, **vq_kwargs) -> None:
        super().__init__()
        self.dim = dim
        self.stages = nn.ModuleList(EMAVectorQuantizer(codebook_size, dim, **vq_kwargs) for _ in range(num_stages))
        self.codebook_sizes = [codebook_size] * num_stages

    def forward(self, lats: torch.Tensor) -> QuantizerOutput:
        self.check_lats(lats)
        residual, total, toks, commit = lats, torch.zeros_like(lats), [], lats.new_zeros(())
        for stage in self.stages:
            out = stage(residual)
            total = total + out.qlats
            residual = residual - out.qlats.detach()
            toks.append(out.toks)
            commit = commit + out.losses["commit"]
        return QuantizerOutput(total, torch.cat(toks, dim=-1), {"commit": commit})

    def toks_to_qlats(self, toks: torch.Tensor) -> torch.Tensor:
        self.check_toks(toks)
        return sum(stage.codebook[toks[..., i]] for i, stage in enumerate(self.stages))
