"""Quality metrics beyond PESQ/STOI: WARP-Q, F0 RMSE and voicing error, DNSMOS, PLCMOS, UTMOS.

Each wraps a maintained package and runs offline: ``warpq`` (Jassim et al., 2021/2025),
``amfm_decompy`` (YAAPT pitch; Zahorian and Hu, 2008), ``speechmos`` (DNSMOS P.835/P.808 and
PLCMOS ONNX models inside the wheel). UTMOS needs a local TorchScript or ONNX file
(``UTMOS(path)``), since its weights are in no maintained wheel (the ``utmos`` package on PyPI
needs fairseq and downloads at run time).
"""

from __future__ import annotations

import functools
import os

import numpy as np

__all__ = ["warpq_score", "f0_metrics", "yaapt_f0", "dnsmos", "plcmos", "UTMOS", "export_utmos"]


@functools.lru_cache(maxsize=2)
def _warpq(sr: int):
    if not hasattr(np.lib, "pad"):  # warpq 1.5 and pyvad call np.lib.pad, removed in NumPy 2
        np.lib.pad = np.pad
    from warpq.core import warpqMetric

    return warpqMetric(sr=sr, n_jobs=1)


def warpq_score(ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> dict:
    """WARP-Q raw score (lower is better, 0 = identical) and its [0, 1] normalisation."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = _warpq(sr).evaluate(np.asarray(ref, dtype=np.float32), np.asarray(deg, dtype=np.float32), arr_sr=sr)
    return {"warpq": float(out["raw_warpq_score"]), "warpq_norm": float(out["normalized_warpq_score"])}


def yaapt_f0(sig: np.ndarray, sr: int = 16000, frame_ms: float = 10.0) -> np.ndarray:
    """YAAPT F0 in Hz per ``frame_ms`` frame, 0 where unvoiced (non-interpolated values)."""
    import amfm_decompy.basic_tools as basic
    import amfm_decompy.pYAAPT as pYAAPT

    obj = basic.SignalObj(np.asarray(sig, dtype=np.float64), sr)
    try:
        pitch = pYAAPT.yaapt(obj, frame_length=25, frame_space=frame_ms, f0_min=50, f0_max=500)
    except Exception:  # YAAPT fails on silence / very short clips: all unvoiced (as LM-loss does)
        return np.zeros(int(len(sig) / (sr * frame_ms / 1000)))
    return np.asarray(pitch.samp_values, dtype=np.float64)


def f0_metrics(ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> dict:
    """F0 RMSE (Hz, over frames voiced in both) and voicing decision error (fraction of frames).

    Example
    -------
    >>> t = np.arange(16000) / 16000
    >>> x = 0.5 * np.sin(2 * np.pi * 150 * t) * (t > 0.2)
    >>> m = f0_metrics(x, x)
    >>> m["f0_rmse"], m["voicing_error"]
    (0.0, 0.0)
    """
    a, b = yaapt_f0(ref, sr), yaapt_f0(deg, sr)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    both = (a > 0) & (b > 0)
    rmse = float(np.sqrt(np.mean((a[both] - b[both]) ** 2))) if both.any() else None
    return {"f0_rmse": rmse, "voicing_error": float(np.mean((a > 0) != (b > 0))) if n else None}


def dnsmos(sig: np.ndarray, sr: int = 16000) -> dict:
    """DNSMOS P.835 (signal, background, overall) and P.808 MOS, 16 kHz."""
    from speechmos import dnsmos as model

    out = model.run(np.asarray(sig, dtype=np.float32), sr)
    return {"dnsmos_sig": float(out["sig_mos"]), "dnsmos_bak": float(out["bak_mos"]),
            "dnsmos_ovrl": float(out["ovrl_mos"]), "dnsmos_p808": float(out["p808_mos"])}


def plcmos(sig: np.ndarray, sr: int = 16000, seed: int = 0) -> dict:
    """PLCMOS v2 (packet-loss-concealment MOS), made deterministic.

    speechmos averages over random "rater" embeddings drawn from NumPy's global generator, so
    repeated calls differ by ~0.01; here the draw is seeded (and the global state restored).
    """
    from speechmos import plcmos as model

    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return {"plcmos": float(model.run(np.asarray(sig, dtype=np.float32), sr)["plcmos"])}
    finally:
        np.random.set_state(state)


class UTMOS:
    """UTMOS (UTMOS22 strong learner, Saeki et al., 2022) from a local exported file, at 16 kHz.

    ``UTMOS(path)(sig, sr) -> {"utmos": float}``. The file is either TorchScript (``.pt`` /
    ``.ts`` / ``.jit``: ``forward(wav [1, T] float32, sr: int) -> score``) or ONNX (``.onnx``:
    one input ``[1, T]`` float32 at 16 kHz, one score output), run with onnxruntime. Audio at
    another rate is resampled to 16 kHz first. :func:`export_utmos` writes either from the
    published predictor (``tarepan/SpeechMOS`` ``utmos22_strong`` through ``torch.hub``, on a
    machine with internet). No download is attempted here: a missing file raises
    FileNotFoundError naming it.
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu") -> None:
        path = str(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: UTMOS checkpoint not found (pass a TorchScript or ONNX file; "
                                    "python -m speechbrain_codec.metrics.export_utmos writes one)")
        self.path, self.device = path, device
        if path.endswith(".onnx"):
            import onnxruntime

            self.session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            self.input_name = self.session.get_inputs()[0].name
            self.model = None
        else:
            import torch

            self.model = torch.jit.load(path, map_location=device).eval()

    def __call__(self, sig: np.ndarray, sr: int = 16000) -> dict:
        import torch

        x = torch.as_tensor(np.asarray(sig, dtype=np.float32))
        if sr != 16000:
            from ..dataio import resample

            x = resample(x, sr, 16000)
        if self.model is None:
            out = self.session.run(None, {self.input_name: x[None].numpy()})[0]
            return {"utmos": float(np.asarray(out).reshape(-1)[0])}
        with torch.no_grad():
            score = self.model(x[None].to(self.device), 16000)
        return {"utmos": float(torch.as_tensor(score).reshape(-1)[0])}


def export_utmos(predictor, out: str | os.PathLike, seconds: float = 3.0) -> str:
    """Export a UTMOS predictor ``(wav [1, T], sr) -> score [1]`` to ``out`` (``.onnx`` or
    TorchScript), with the time axis dynamic. Returns the path."""
    import torch

    out = str(out)

    class _At16k(torch.nn.Module):  # the exported file's contract: 16 kHz input
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, wav: torch.Tensor) -> torch.Tensor:
            return self.inner(wav, 16000).reshape(-1)

    example = 0.1 * torch.randn(1, int(16000 * seconds))
    wrapped = _At16k(predictor.eval())
    if out.endswith(".onnx"):
        torch.onnx.export(wrapped, (example,), out, input_names=["wav"], output_names=["score"],
                          dynamic_axes={"wav": {1: "time"}}, dynamo=False)
    else:
        traced = torch.jit.trace(wrapped, (example,), check_trace=False)

        class _WithRate(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, wav: torch.Tensor, sr: int) -> torch.Tensor:
                return self.inner(wav)

        torch.jit.script(_WithRate(traced)).save(out)
    return out
