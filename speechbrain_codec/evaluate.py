"""Evaluate decoded systems against a reference manifest and write ``results.json``.

For every system (a folder of ``<ID>.wav`` files, optionally with ``bitrate.json`` and a recipe's
``system.json`` of facts to show, e.g. ``{"stage": 2}``; both merged into its summary) and every
utterance of the manifest, the selected metrics are computed; the reference itself is scored as
the row ``original``. Intrusive metrics first compensate the codec's delay (log-mel envelope
cross-correlation, refined on the waveform). Intelligibility: WER (English) / CER (Mandarin)
against the ground-truth text and dWER / dCER against the ASR transcript of the original, all
corpus-level; and ``dwer_utt`` / ``dcer_utt``, the mean over utterances of the system's minus the
original's error rate against the ground truth (FocalCodec-S's dCER). A problem with one utterance (missing or silent file, a metric that fails) is
recorded for that utterance and the rest of the evaluation completes. Work is spread over
worker processes (one job per system and utterance).

Metrics (``--metrics``): pesq (wideband), pesq_nb, stoi, estoi, warpq, f0 (RMSE + voicing
error, YAAPT), dnsmos, plcmos, spk (speaker similarity), utmos (needs ``--utmos PATH``).
ASR (``--asr``): pocketsphinx (English, offline), whisper:<hub id or path>, ctc:<hub id or
path>, none.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import multiprocessing
import os
import threading
import time
from pathlib import Path

import numpy as np

from .dataio import load_audio, read_manifest
from .metrics import align_delay, normalize_text, word_errors
from .utils import CodecError, atomic_write_json

__all__ = ["evaluate_systems", "ALL_METRICS", "DEFAULT_METRICS", "protocol"]

logger = logging.getLogger("speechbrain_codec")

SAMPLE_RATE = 16000
ALL_METRICS = ("pesq", "pesq_nb", "stoi", "estoi", "warpq", "f0", "dnsmos", "plcmos", "spk", "utmos")
DEFAULT_METRICS = ("pesq", "stoi", "estoi")
INTRUSIVE = {"pesq", "pesq_nb", "stoi", "estoi", "warpq", "f0", "spk"}
ASR_LANGS = {"pocketsphinx": ("en",), "ctc": ("en",), "whisper": ("en", "zh")}


def protocol(metrics: tuple[str, ...], asr: str) -> dict:
    """What the evaluation did, written into results.json."""
    text = {
        "alignment": "intrusive metrics after delay compensation per utterance: log-mel energy envelope "
        "cross-correlation (10 ms frames, +-250 ms), refined on the waveform within +-5 ms",
        "pesq": "ITU-T P.862.2 wideband (pesq package), mean over utterances",
        "pesq_nb": "ITU-T P.862 narrowband on 8 kHz resampled audio",
        "stoi": "STOI (pystoi)", "estoi": "extended STOI (pystoi)",
        "warpq": "WARP-Q raw score, lower is better (warpq package, 16 kHz)",
        "f0": "YAAPT F0 (amfm_decompy, 10 ms): RMSE in Hz over frames voiced in both, voicing decision error",
        "dnsmos": "DNSMOS P.835 sig/bak/ovrl and P.808 (speechmos ONNX models)",
        "plcmos": "PLCMOS v2 (speechmos)", "spk": "speaker similarity: cosine of resemblyzer embeddings",
        "utmos": "UTMOS from the given TorchScript checkpoint",
    }
    out = {"sample_rate": SAMPLE_RATE, "metrics": list(metrics), "asr": asr}
    out.update({m: text[m] for m in metrics})
    if asr != "none":
        langs = ASR_LANGS[asr.split(":")[0]]
        out["intelligibility"] = (
            f"{asr} on utterances in {', '.join(langs)}; WER (en) / CER (zh) against the ground truth, "
            "dWER / dCER against the transcript of the original; corpus-level; English normalised with "
            "Whisper's EnglishTextNormalizer, Mandarin per character"
        )
        if asr == "pocketsphinx":
            out["asr_input"] = "level-matched to the reference, 1e-4 dither, rounded to int16"
    out["bitrate"] = "nominal = frame rate x sum log2(codebook size); payload/file = measured bits / total duration"
    return out


# ---------------------------------------------------------------------- worker side
_STATE: dict = {}


def _init_worker(asr: str, metrics: tuple[str, ...], utmos_path: str | None, threads: int,
                 spk_model: str = "resemblyzer", device: str = "cpu") -> None:
    import torch

    torch.set_num_threads(threads)
    _STATE.clear()  # in-process runs (workers=1) must not reuse models of an earlier configuration
    _STATE.update(asr_spec=asr, metrics=metrics, utmos_path=utmos_path, spk_model=spk_model, device=device)


def _asr():
    if "asr" not in _STATE:
        from .metrics.asr import make_asr

        _STATE["asr"] = None if _STATE["asr_spec"] == "none" else make_asr(_STATE["asr_spec"], _STATE.get("device", "cpu"))
    return _STATE["asr"]


def _load_models() -> None:
    """The metric models and the ASR of this worker, loaded on its first job (a slow load or a
    download does not count against an utterance's time limit)."""
    _asr()
    if "spk" in _STATE["metrics"] and "spk" not in _STATE:
        from .metrics.speaker import SpeakerSimilarity

        _STATE["spk"] = SpeakerSimilarity(_STATE["spk_model"])
    if "utmos" in _STATE["metrics"] and "utmos" not in _STATE:
        from .metrics.quality import UTMOS

        _STATE["utmos"] = UTMOS(_STATE["utmos_path"])


def _score(ref: np.ndarray, deg: np.ndarray, lang: str) -> dict:
    """All selected metrics of one utterance."""
    from .metrics import pesq_score, stoi_score

    metrics = _STATE["metrics"]
    if np.max(np.abs(deg)) < 1e-6:
        raise CodecError("decoded audio is silent")
    out: dict = {}
    r, d, out["delay"] = align_delay(ref, deg, SAMPLE_RATE)
    if "pesq" in metrics:
        out["pesq"] = pesq_score(r, d, SAMPLE_RATE, "wb")
    if "pesq_nb" in metrics:
        import torch

        from .dataio import resample

        r8, d8 = (resample(torch.as_tensor(x, dtype=torch.float32), SAMPLE_RATE, 8000).numpy() for x in (r, d))
        out["pesq_nb"] = pesq_score(r8, d8, 8000, "nb")
    if "stoi" in metrics:
        out["stoi"] = stoi_score(r, d, SAMPLE_RATE)
    if "estoi" in metrics:
        out["estoi"] = stoi_score(r, d, SAMPLE_RATE, extended=True)
    if "warpq" in metrics:
        from .metrics.quality import warpq_score

        out.update(warpq_score(r, d, SAMPLE_RATE))
    if "f0" in metrics:
        from .metrics.quality import f0_metrics

        out.update(f0_metrics(r, d, SAMPLE_RATE))
    if "spk" in metrics:
        if "spk" not in _STATE:
            from .metrics.speaker import SpeakerSimilarity

            _STATE["spk"] = SpeakerSimilarity(_STATE["spk_model"])
        out["spk_sim"] = _STATE["spk"](r, d, SAMPLE_RATE)
    if "dnsmos" in metrics:
        from .metrics.quality import dnsmos

        out.update(dnsmos(deg, SAMPLE_RATE))
    if "plcmos" in metrics:
        from .metrics.quality import plcmos

        out.update(plcmos(deg, SAMPLE_RATE))
    if "utmos" in metrics:
        if "utmos" not in _STATE:
            from .metrics.quality import UTMOS

            _STATE["utmos"] = UTMOS(_STATE["utmos_path"])
        out.update(_STATE["utmos"](deg, SAMPLE_RATE))
    asr = _asr()
    if asr is not None and lang in ASR_LANGS[_STATE["asr_spec"].split(":")[0]]:
        out["hyp"] = normalize_text(asr.transcribe(d, SAMPLE_RATE, level_ref=r, lang=lang), lang)
    return out


class _JobTimeout(BaseException):  # not an Exception: a metric's own `except Exception` must not swallow it
    pass


def _on_alarm(signum, frame):
    raise _JobTimeout()


def _job(system: str, uid: str, ref_path: str, deg_path: str, lang: str,
         timeout: float | None = None) -> tuple[str, str, dict]:
    """Score one utterance; any failure, or taking longer than ``timeout`` seconds (a metric or
    the ASR hanging; SIGALRM, so a hang inside C code ends when it returns to Python), is that
    utterance's ``error``."""
    import signal

    try:
        _load_models()  # once per worker, outside the utterance's time limit
    except Exception as err:
        return system, uid, {"error": f"{type(err).__name__}: {str(err).strip()}"}
    alarm = timeout and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if alarm:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        ref = load_audio(ref_path, SAMPLE_RATE, notices=False).numpy()
        deg = ref if deg_path == ref_path else load_audio(deg_path, SAMPLE_RATE, notices=False).numpy()
        result = _score(ref, deg, lang)
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
        return system, uid, result
    except _JobTimeout:
        return system, uid, {"error": f"timed out after {timeout:g} s (a metric or the ASR hung; --job-timeout)"}
    except CodecError as err:
        return system, uid, {"error": str(err)}
    except Exception as err:  # a metric package failing on one clip must not stop the evaluation
        return system, uid, {"error": f"{type(err).__name__}: {str(err).strip()}"}
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _run_jobs(jobs: list[tuple], workers: int, ctx, init: tuple) -> list[tuple[str, str, dict]]:
    """Every job in a pool of ``workers`` processes. A worker that dies (a metric's native code
    crashing, the OOM killer) breaks the pool: the jobs it left are then run one at a time in a
    fresh pool, so the one that kills its worker again is found, recorded as that utterance's
    error, and the rest complete."""
    done: dict[int, tuple] = {}
    remaining = list(range(len(jobs)))
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=init) as pool:
        futures = {pool.submit(_job, *jobs[i]): i for i in remaining}
        for future in cf.as_completed(futures):
            try:
                done[futures[future]] = future.result()
            except cf.process.BrokenProcessPool:
                pass
    remaining = [i for i in remaining if i not in done]
    if remaining:
        logger.warning("a worker process died; %d jobs left, run one at a time to find the one that kills it",
                       len(remaining))
    pool = None
    try:
        for i in remaining:
            if pool is None:
                pool = cf.ProcessPoolExecutor(1, mp_context=ctx, initializer=_init_worker, initargs=init)
            try:
                done[i] = pool.submit(_job, *jobs[i]).result()
            except cf.process.BrokenProcessPool:
                name, uid = jobs[i][:2]
                done[i] = (name, uid, {"error": "the worker process died scoring it (a metric or the ASR crashed)"})
                pool.shutdown(wait=False)
                pool = None
    finally:
        if pool is not None:
            pool.shutdown()
    return [done[i] for i in range(len(jobs))]


# ---------------------------------------------------------------------- main side
def _summary(per_utt: dict, rows: dict, ref_hyps: dict) -> dict:
    scored = [u for u in per_utt.values() if "error" not in u]
    summary: dict = {"utterances": len(scored), "failed": len(per_utt) - len(scored)}
    if summary["failed"]:  # the averages below cover the `utterances` scored; these are not in them
        summary["failures"] = {uid: u["error"] for uid, u in per_utt.items() if "error" in u}
    keys = sorted({k for u in scored for k, v in u.items() if isinstance(v, (int, float)) and k != "delay"})
    for key in keys:
        values = [u[key] for u in scored if u.get(key) is not None]
        summary[key] = float(np.mean(values)) if values else None
    summary["pesq_wb"] = summary.pop("pesq", None)
    for lang, name in (("en", "wer"), ("zh", "cer")):
        errs = n = derrs = dn = 0
        for uid, u in per_utt.items():
            if "hyp" not in u or not (rows[uid].get("lang") or "en").startswith(lang):
                continue
            text = normalize_text(rows[uid].get("text") or "", lang)
            if text:
                e, m = word_errors(text, u["hyp"])
                errs, n = errs + e, n + m
                u[name] = e / m
            else:
                u["note"] = f"no transcript in the manifest: {name.upper()} skipped, d{name.upper()} scored"
            if ref_hyps.get(uid):
                e, m = word_errors(ref_hyps[uid], u["hyp"])
                derrs, dn = derrs + e, dn + m
                u["d" + name] = e / m
        summary[name] = errs / n if n else None
        summary["d" + name] = derrs / dn if dn else None
    return summary


def _delta_utt(per_utt: dict, original: dict) -> dict:
    """``dwer_utt`` / ``dcer_utt``: mean over utterances of (system's - original's) error rate
    against the ground truth (``_summary`` stored ``wer`` / ``cer`` per utterance)."""
    out = {}
    for name in ("wer", "cer"):
        diffs = [u[name] - original[uid][name] for uid, u in per_utt.items()
                 if u.get(name) is not None and original.get(uid, {}).get(name) is not None]
        out[f"d{name}_utt"] = float(np.mean(diffs)) if diffs else None
    return out


def evaluate_systems(
    manifest: str | os.PathLike,
    systems: dict[str, str | os.PathLike],
    data_root: str | os.PathLike | None = None,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    asr: str = "pocketsphinx",
    workers: int = 2,
    utmos_path: str | None = None,
    spk_model: str = "resemblyzer",
    device: str = "cpu",
    job_timeout: float | None = 600.0,
) -> dict:
    """Score each system folder against the manifest; returns the results dictionary.

    ``job_timeout``: seconds one utterance may take (all its metrics and the ASR); longer is
    that utterance's error. A worker process that dies is replaced and the utterance that killed
    it recorded as failed; each summary's ``utterances`` counts what its averages cover, and
    ``failures`` lists the rest.

    ``spk_model``: ``resemblyzer`` or a transformers x-vector model (hub id or path, e.g.
    ``microsoft/wavlm-base-plus-sv``) for the ``spk`` metric. ``device`` runs the neural ASR
    (Whisper, CTC) there; the other metric models run on the CPU. With a CUDA device, workers
    are spawned rather than forked (CUDA does not survive a fork).
    """
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise CodecError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(ALL_METRICS)}")
    if "utmos" in metrics and not utmos_path:
        raise CodecError("metric utmos needs --utmos PATH (a TorchScript UTMOS checkpoint)")
    if asr != "none" and asr.split(":")[0] not in ASR_LANGS:
        raise CodecError(f"unknown ASR {asr!r}: use pocketsphinx, whisper:<id or path>, ctc:<id or path> or none")
    t0 = time.time()
    rows = read_manifest(manifest, data_root)
    jobs = []
    for name, folder in [("original", None), *systems.items()]:
        for uid, row in rows.items():
            deg = row["wav"] if folder is None else str(Path(folder) / f"{uid}.wav")
            jobs.append((name, uid, row["wav"], deg, (row.get("lang") or "en")[:2], job_timeout))
    init = (asr, tuple(metrics), utmos_path, 1 if workers > 1 else 2, spk_model, str(device))
    if workers > 1:
        ctx = multiprocessing.get_context("spawn" if str(device).startswith("cuda") else "fork")
        done = _run_jobs(jobs, workers, ctx, init)
    else:
        _init_worker(*init)
        done = [_job(*j) for j in jobs]
    per_system: dict[str, dict] = {name: {} for name in ["original", *systems]}
    for name, uid, entry in done:
        per_system[name][uid] = entry
        if "error" in entry:
            logger.warning("%s / %s: not scored: %s", name, uid, entry["error"])
    ref_hyps = {uid: u.get("hyp") for uid, u in per_system["original"].items()}
    results: dict = {"protocol": protocol(tuple(metrics), asr), "manifest": str(manifest), "systems": {}}
    if "spk" in metrics:
        results["protocol"]["spk"] = f"speaker similarity: cosine of {spk_model} embeddings"
    if asr != "none":
        results["protocol"]["delta_utt"] = (
            "dWER_utt / dCER_utt (FocalCodec-S's dCER, focalcodec_s.md §5.2): per utterance, the error rate of the "
            "system's transcript against the ground truth minus that of the original's, then the mean over the "
            "utterances both have (can be negative)")
    for name, per_utt in per_system.items():
        summary = _summary(per_utt, rows, ref_hyps)
        if name != "original":
            summary.update(_delta_utt(per_utt, per_system["original"]))
        folder = systems.get(name)
        for facts in ("bitrate.json", "system.json"):  # measured rates; facts a recipe records (stage, ...)
            if folder is not None and (Path(folder) / facts).is_file():
                summary.update(json.loads((Path(folder) / facts).read_text()))
        results["systems"][name] = {"summary": summary, "utterances": per_utt}
    results["wall_seconds"] = round(time.time() - t0, 2)
    results["workers"] = workers
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="speechbrain-codec evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--data-root", default=None)
    p.add_argument("--system", action="append", default=[], metavar="NAME=FOLDER")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                   help=f"comma-separated, from {','.join(ALL_METRICS)}; 'all' for every offline one")
    p.add_argument("--asr", default="pocketsphinx", help="pocketsphinx | whisper:<id or path> | ctc:<id or path> | none")
    p.add_argument("--utmos", default=None, help="TorchScript UTMOS checkpoint (for metric utmos)")
    p.add_argument("--spk-model", default="resemblyzer", help="resemblyzer or a transformers x-vector id/path")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--job-timeout", type=float, default=600.0,
                   help="seconds one utterance may take (metrics + ASR) before it is recorded as failed")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps: where the neural ASR runs")
    p.add_argument("--out", required=True, help="results.json to write")
    args = p.parse_args(argv)
    from .cli import resolve_device

    device = str(resolve_device(args.device))
    systems = {}
    for spec in args.system:
        name, sep, folder = spec.partition("=")
        if not sep:
            raise CodecError(f"--system {spec}: expected NAME=FOLDER")
        if not Path(folder).is_dir():
            raise CodecError(f"{folder}: system folder missing; run the stage that decodes {name}")
        systems[name] = folder
    metrics = tuple(m for m in ALL_METRICS if m != "utmos") if args.metrics == "all" else tuple(
        m.strip() for m in args.metrics.split(",") if m.strip())
    results = evaluate_systems(args.manifest, systems, args.data_root, metrics, args.asr, args.workers, args.utmos,
                               args.spk_model, device, args.job_timeout)
    atomic_write_json(args.out, results)
    print(f"evaluated {len(systems) + 1} systems x {len(read_manifest(args.manifest))} utterances with "
          f"{args.workers} workers in {results['wall_seconds']} s -> {args.out}")
    return 0
