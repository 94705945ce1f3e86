"""Evaluate decoded systems against a reference manifest and write ``results.json``.

For every system (a folder of ``<ID>.wav`` files, optionally with ``bitrate.json`` and a recipe's
``system.json`` of facts to show, e.g. ``{"stage": 2}``; both merged into its summary) and every
utterance of the manifest, the selected metrics are computed; the reference itself is scored as
the row ``original``. Intrusive metrics first compensate the codec's delay (log-mel envelope
cross-correlation, refined on the waveform). Intelligibility: WER (English) / CER (Mandarin)
against the ground-truth text and dWER / dCER against the ASR transcript of the original, all
corpus-level; and ``dwer_utt`` / ``dcer_utt``, the mean over utterances of the system's minus the
original's error rate against the ground truth (FocalCodec-S's dCER); ``wer_median`` /
``cer_median``, the median of per-utterance rates (DP-SLM's statistic).

Every system is scored on the same utterances, the manifest's. A problem with one utterance
(missing or silent file, the ASR failing) is recorded for that utterance, the rest of the
evaluation completes, and the utterance stays in every average with the metric's worst value
(:data:`WORST`: an empty transcript, i.e. WER 100 % of its words; STOI 0; PESQ / MOS 1; speaker
cosine -1); a metric without a finite worst value (WARP-Q raw, F0 RMSE) or without a value on
some utterances lists the count under ``incomplete``. A metric that fails on one clip costs only
that metric there (its worst value; ``metric_failures`` lists it by metric), not the clip's other
metrics. Each mean comes with a seeded percentile
bootstrap 95 % interval over utterances (``ci95``), and ``paired`` compares systems utterance
by utterance (paired bootstrap and Wilcoxon signed-rank, :mod:`speechbrain_codec.metrics.stats`).
Several ASRs can score one run (``--asr`` repeated: the first fills ``wer`` / ``dwer`` ...,
every one its ``by_asr`` entry); ``--protocol`` applies a published preset
(:mod:`speechbrain_codec.protocols`). Work is spread over worker processes (one job per system
and utterance).

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

__all__ = ["evaluate_systems", "ALL_METRICS", "DEFAULT_METRICS", "WORST", "protocol", "asr_labels"]

logger = logging.getLogger("speechbrain_codec")

SAMPLE_RATE = 16000
ALL_METRICS = ("pesq", "pesq_nb", "stoi", "estoi", "warpq", "f0", "dnsmos", "plcmos", "spk", "utmos")
DEFAULT_METRICS = ("pesq", "stoi", "estoi")
INTRUSIVE = {"pesq", "pesq_nb", "stoi", "estoi", "warpq", "f0", "spk"}
ASR_LANGS = {"pocketsphinx": ("en",), "ctc": ("en",), "whisper": ("en", "zh")}
# the value a failed (or silent) utterance gets: the bottom of each metric's range
WORST = {"pesq": 1.0, "pesq_nb": 1.0, "stoi": 0.0, "estoi": 0.0, "warpq_norm": 0.0, "voicing_error": 1.0,
         "spk_sim": -1.0, "dnsmos_sig": 1.0, "dnsmos_bak": 1.0, "dnsmos_ovrl": 1.0, "dnsmos_p808": 1.0,
         "plcmos": 1.0, "utmos": 1.0}
# summary keys each metric produces (warpq, f0_rmse: no finite worst value -> counted as incomplete)
METRIC_KEYS = {"pesq": ("pesq",), "pesq_nb": ("pesq_nb",), "stoi": ("stoi",), "estoi": ("estoi",),
               "warpq": ("warpq", "warpq_norm"), "f0": ("f0_rmse", "voicing_error"),
               "dnsmos": ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"), "plcmos": ("plcmos",),
               "spk": ("spk_sim",), "utmos": ("utmos",)}
INTEL_KEYS = ("wer", "dwer", "cer", "dcer", "dwer_utt", "dcer_utt", "wer_median", "cer_median")
FAILURE_POLICY = ("every system is scored on the manifest's utterances; a failed or silent one keeps its place with "
                  "the metric's worst value (empty transcript: WER 100 % of its words; STOI/ESTOI 0; PESQ, DNSMOS, "
                  "PLCMOS, UTMOS 1; speaker cosine -1; voicing error 1; WARP-Q normalised 0); metrics with no "
                  "finite worst value (WARP-Q raw, F0 RMSE) average what was scored and list the rest under "
                  "'incomplete'; a metric that fails on one clip gets its worst value there (listed under "
                  "'metric_failures') and the clip's other metrics count")
CONFIDENCE = ("ci95: percentile bootstrap 95 % interval over utterances (1000 resamples, seed 0; corpus-level rates "
              "resampled as ratios of summed errors / words)")
PAIRED = ("paired: each pair of systems on the same utterances; paired bootstrap (1000 resamples, seed 0) 95 % "
          "interval of the difference and two-sided p, and the Wilcoxon signed-rank p (scipy, two-sided, zero "
          "differences dropped) for per-utterance metrics")


def asr_labels(specs) -> list[str]:
    """Short, distinct names of the ASRs (table headers, ``by_asr`` keys)."""
    from .metrics.asr import asr_label

    out: list[str] = []
    for spec in specs:
        label = asr_label(spec)
        while label in out:
            label += "'"
        out.append(label)
    return out


def protocol(metrics: tuple[str, ...], asr) -> dict:
    """What the evaluation did, written into results.json (``asr``: one spec or a list, the
    first the primary)."""
    asrs = [asr] if isinstance(asr, str) else list(asr) or ["none"]
    asr = asrs[0]
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
        "utmos": "UTMOS22 strong from the given local TorchScript / ONNX file (16 kHz)",
    }
    out = {"sample_rate": SAMPLE_RATE, "metrics": list(metrics), "asr": asr}
    out.update({m: text[m] for m in metrics})
    if asr != "none":
        out["asrs"], out["asr_labels"] = asrs, asr_labels(asrs)
        langs = ASR_LANGS[asr.split(":")[0]]
        out["intelligibility"] = (
            f"{asr} on utterances in {', '.join(langs)}; WER (en) / CER (zh) against the ground truth, "
            "dWER / dCER against the transcript of the original; corpus-level; English normalised with "
            "Whisper's EnglishTextNormalizer, Mandarin per character"
        )
        if len(asrs) > 1:
            out["intelligibility"] += f"; also scored with {', '.join(asrs[1:])} (by_asr)"
        if "pocketsphinx" in asrs:
            out["asr_input"] = "level-matched to the reference, 1e-4 dither, rounded to int16"
    out["bitrate"] = "nominal = frame rate x sum log2(codebook size); payload/file = measured bits / total duration"
    out.update(failures=FAILURE_POLICY, confidence=CONFIDENCE, paired_tests=PAIRED)
    return out


# ---------------------------------------------------------------------- worker side
_STATE: dict = {}


def _init_worker(asr, metrics: tuple[str, ...], utmos_path: str | None, threads: int,
                 spk_model: str = "resemblyzer", device: str = "cpu", normaliser: str = "whisper") -> None:
    import torch

    torch.set_num_threads(threads)
    _STATE.clear()  # in-process runs (workers=1) must not reuse models of an earlier configuration
    specs = [a for a in ([asr] if isinstance(asr, str) else list(asr)) if a != "none"]
    _STATE.update(asr_spec=specs[0] if specs else "none", asr_specs=specs, labels=asr_labels(specs), metrics=metrics,
                  utmos_path=utmos_path, spk_model=spk_model, device=device, normaliser=normaliser)


def _asrs() -> list:
    """``(spec, label, model)`` of every ASR of this worker, the primary first."""
    if "asrs" not in _STATE:
        from .metrics import asr as asr_module

        _STATE["asrs"] = [(spec, label, asr_module.make_asr(spec, _STATE.get("device", "cpu")))
                          for spec, label in zip(_STATE["asr_specs"], _STATE["labels"])]
    return _STATE["asrs"]


def _asr():
    """The primary ASR (None without one)."""
    models = _asrs()
    return models[0][2] if models else None


def _load_models() -> None:
    """The metric models and the ASRs of this worker, loaded on its first job (a slow load or a
    download does not count against an utterance's time limit)."""
    _asrs()
    if "spk" in _STATE["metrics"] and "spk" not in _STATE:
        from .metrics.speaker import SpeakerSimilarity

        _STATE["spk"] = SpeakerSimilarity(_STATE["spk_model"], _STATE.get("device", "cpu"))
    if "utmos" in _STATE["metrics"] and "utmos" not in _STATE:
        from .metrics.quality import UTMOS

        _STATE["utmos"] = UTMOS(_STATE["utmos_path"], _STATE.get("device", "cpu"))


def _score(ref: np.ndarray, deg: np.ndarray, lang: str) -> dict:
    """All selected metrics of one utterance."""
    from .metrics import pesq_score, quality, stoi_score

    metrics = _STATE["metrics"]
    if np.max(np.abs(deg)) < 1e-6:
        raise CodecError("decoded audio is silent")
    out: dict = {}
    r, d, out["delay"] = align_delay(ref, deg, SAMPLE_RATE)

    def run(metric: str, fn) -> None:
        """``fn()`` (it fills ``out``); a metric package raising on this clip costs only this
        metric (its worst value in the averages, listed under ``metric_failures``)."""
        if metric not in metrics:
            return
        try:
            fn()
        except Exception as err:  # not _JobTimeout (a BaseException): a hang still ends the utterance
            out.setdefault("metric_errors", {})[metric] = f"{type(err).__name__}: {str(err).strip()}"

    def pesq_nb():
        import torch

        from .dataio import resample

        r8, d8 = (resample(torch.as_tensor(x, dtype=torch.float32), SAMPLE_RATE, 8000).numpy() for x in (r, d))
        out["pesq_nb"] = pesq_score(r8, d8, 8000, "nb")

    def spk():
        if "spk" not in _STATE:
            from .metrics.speaker import SpeakerSimilarity

            _STATE["spk"] = SpeakerSimilarity(_STATE["spk_model"], _STATE.get("device", "cpu"))
        out["spk_sim"] = _STATE["spk"](r, d, SAMPLE_RATE)

    def utmos():
        if "utmos" not in _STATE:
            from .metrics.quality import UTMOS

            _STATE["utmos"] = UTMOS(_STATE["utmos_path"], _STATE.get("device", "cpu"))
        out.update(_STATE["utmos"](deg, SAMPLE_RATE))

    run("pesq", lambda: out.update(pesq=pesq_score(r, d, SAMPLE_RATE, "wb")))
    run("pesq_nb", pesq_nb)
    run("stoi", lambda: out.update(stoi=stoi_score(r, d, SAMPLE_RATE)))
    run("estoi", lambda: out.update(estoi=stoi_score(r, d, SAMPLE_RATE, extended=True)))
    run("warpq", lambda: out.update(quality.warpq_score(r, d, SAMPLE_RATE)))
    run("f0", lambda: out.update(quality.f0_metrics(r, d, SAMPLE_RATE)))
    run("spk", spk)
    run("dnsmos", lambda: out.update(quality.dnsmos(deg, SAMPLE_RATE)))
    run("plcmos", lambda: out.update(quality.plcmos(deg, SAMPLE_RATE)))
    run("utmos", utmos)
    hyps = {}
    for spec, label, model in _asrs():
        if lang in ASR_LANGS[spec.split(":")[0]]:
            # the whole decoded clip: the delay-aligned pair is cut to the shorter length (and up to
            # 250 ms at one start), which would hide words of a codec that chooses its own durations
            hyps[label] = normalize_text(model.transcribe(deg, SAMPLE_RATE, level_ref=ref, lang=lang), lang,
                                         _STATE.get("normaliser", "whisper"))
    if hyps:
        out["hyp"] = hyps.get(_STATE["labels"][0])
        if out["hyp"] is None:
            del out["hyp"]
        if len(_STATE["labels"]) > 1:
            out["hyps"] = hyps
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
def _lang(row: dict) -> str:
    return (row.get("lang") or "en")[:2]


def _intel(per_utt: dict, rows: dict, ref_hyps: dict, label: str | None, primary: bool, spec: str | None,
           normaliser: str, n_boot: int) -> tuple[dict, dict]:
    """WER / CER (ground truth) and dWER / dCER (the original's transcript) of one ASR, corpus
    level with bootstrap intervals, and their medians over utterances. A failed utterance counts
    as an empty transcript where this ASR covers its language; transcribed utterances a rate
    cannot use (no manifest text for WER / CER, no transcript of the original for dWER / dCER)
    are counted under ``incomplete``. Returns ``(summary, vectors)``,
    the vectors being per-utterance ``(errors, words)`` and rates (manifest order) for the
    paired tests; per-utterance rates are also stored in the utterance entries."""
    from .metrics.stats import bootstrap_ci, ratio_ci

    covers = ASR_LANGS[spec.split(":")[0]] if spec and spec != "none" else ()
    out: dict = {}
    vectors: dict = {}
    excluded: dict = {}  # transcribed utterances a rate could not use (no manifest text, no reference transcript)
    for lang, name in (("en", "wer"), ("zh", "cer")):
        counts = {name: ([], []), "d" + name: ([], [])}
        rates: list = []
        for uid, u in per_utt.items():
            if _lang(rows[uid]) != lang:
                continue
            if "error" in u:
                hyp = "" if lang in covers else None
            else:
                hyp = u.get("hyp") if primary else u.get("hyps", {}).get(label)
            if hyp is None:
                continue
            target = u if primary else u.setdefault("by_asr", {}).setdefault(label, {})
            if not primary:
                target["hyp"] = hyp
            text = normalize_text(rows[uid].get("text") or "", lang, normaliser)
            rate = None
            if text:
                e, m = word_errors(text, hyp)
                counts[name][0].append(e)
                counts[name][1].append(m)
                target[name] = rate = e / m
            else:
                excluded[name] = excluded.get(name, 0) + 1
                if "error" not in u:
                    u["note"] = f"no transcript in the manifest: {name.upper()} skipped, d{name.upper()} scored"
            rates.append(rate)
            if ref_hyps.get(uid):
                e, m = word_errors(ref_hyps[uid], hyp)
                counts["d" + name][0].append(e)
                counts["d" + name][1].append(m)
                target["d" + name] = e / m
            else:  # the original clip failed or its transcript is empty: nothing to compare with
                excluded["d" + name] = excluded.get("d" + name, 0) + 1
        for key, (errs, words) in counts.items():
            out[key] = sum(errs) / sum(words) if sum(words) else None
            out.setdefault("ci95", {})[key] = ratio_ci(errs, words, n_boot=n_boot)
        scored = [r for r in rates if r is not None]
        out[f"{name}_median"] = float(np.median(scored)) if scored else None
        out["ci95"][f"{name}_median"] = bootstrap_ci(scored, "median", n_boot=n_boot)
        vectors.update({key: counts[key] for key in counts})
    if excluded:
        out["incomplete"] = excluded
    return out, vectors


#: summary key -> the metric that produces it
KEY_METRIC = {k: m for m, keys in METRIC_KEYS.items() for k in keys}


def _value(u: dict, key: str):
    """One utterance's value of ``key`` for the averages: the metric's worst value where the
    utterance failed or that metric failed on it, else its value (None when absent)."""
    if "error" in u or KEY_METRIC.get(key) in u.get("metric_errors", {}):
        return WORST.get(key)
    return u.get(key)


def _summary(per_utt: dict, rows: dict, ref_hyps: dict, metrics: tuple[str, ...] | None = None,
             asr: str | None = None, normaliser: str = "whisper", n_boot: int = 1000) -> dict:
    """One system's summary over all of its utterances (failed ones at the worst value)."""
    from .metrics.stats import bootstrap_ci

    failed = {uid: u["error"] for uid, u in per_utt.items() if "error" in u}
    summary: dict = {"utterances": len(per_utt), "scored": len(per_utt) - len(failed), "failed": len(failed)}
    if failed:
        summary["failures"] = failed
    metric_failed: dict = {}
    for uid, u in per_utt.items():
        for metric, err in u.get("metric_errors", {}).items():
            metric_failed.setdefault(metric, {})[uid] = err
    if metric_failed:
        summary["metric_failures"] = metric_failed
    keys = {k for u in per_utt.values() if "error" not in u for k, v in u.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "delay"
            and k not in ("wer", "cer", "dwer", "dcer")}
    if metrics is not None:
        keys |= {k for m in metrics for k in METRIC_KEYS.get(m, ())}
    incomplete, ci = {}, {}
    for key in sorted(keys):
        values = [_value(u, key) for u in per_utt.values()]
        present = [v for v in values if v is not None]
        summary[key] = float(np.mean(present)) if present else None
        ci[key] = bootstrap_ci(present, n_boot=n_boot)
        if len(present) < len(values):
            incomplete[key] = len(values) - len(present)
    intel, _ = _intel(per_utt, rows, ref_hyps, None, True, asr, normaliser, n_boot)
    ci.update(intel.pop("ci95"))
    incomplete.update(intel.pop("incomplete", {}))
    summary.update(intel)
    summary["pesq_wb"] = summary.pop("pesq", None)
    if "pesq" in ci:
        ci["pesq_wb"] = ci.pop("pesq")
    summary["ci95"] = {k: v for k, v in ci.items() if v is not None}
    if incomplete:
        summary["incomplete"] = {("pesq_wb" if k == "pesq" else k): n for k, n in incomplete.items()}
    return summary


def _delta_utt(per_utt: dict, original: dict, label: str | None = None, n_boot: int = 1000) -> dict:
    """``dwer_utt`` / ``dcer_utt``: mean over utterances of (system's - original's) error rate
    against the ground truth (``_intel`` stored ``wer`` / ``cer`` per utterance; ``label``: an
    extra ASR's, under ``by_asr``), with its bootstrap interval under ``ci95``."""
    from .metrics.stats import bootstrap_ci

    def rate(u, name):
        return u.get(name) if label is None else u.get("by_asr", {}).get(label, {}).get(name)

    out: dict = {"ci95": {}}
    for name in ("wer", "cer"):
        diffs = [rate(u, name) - rate(original[uid], name) for uid, u in per_utt.items()
                 if rate(u, name) is not None and uid in original and rate(original[uid], name) is not None]
        out[f"d{name}_utt"] = float(np.mean(diffs)) if diffs else None
        if diffs:
            out["ci95"][f"d{name}_utt"] = bootstrap_ci(diffs, n_boot=n_boot)
    if label is None and not out["ci95"]:
        del out["ci95"]
    return out


def _vectors(per_utt: dict, rows: dict, ref_hyps: dict, original: dict, metrics, specs, labels, normaliser) -> dict:
    """Per-utterance values (manifest order, None where absent) of every metric, for paired tests:
    ``("mean", values)``, ``("median", rates)`` or ``("ratio", (errors, words))`` by metric name."""
    out: dict = {}
    keys = {k for m in metrics for k in METRIC_KEYS.get(m, ())}
    for key in sorted(keys):
        out["pesq_wb" if key == "pesq" else key] = (
            "mean", [_value(u, key) for u in per_utt.values()])
    for i, (spec, label) in enumerate(zip(specs, labels)):
        suffix = "" if i == 0 else f" [{label}]"

        def rate(u, name, label=label, primary=i == 0):
            return u.get(name) if primary else u.get("by_asr", {}).get(label, {}).get(name)

        _, ratio = _intel({k: dict(v) for k, v in per_utt.items()}, rows, ref_hyps[label], label, i == 0, spec,
                          normaliser, 1)
        for key, pair in ratio.items():
            out[key + suffix] = ("ratio", pair)
        for name in ("wer", "cer"):
            out[f"{name}_median{suffix}"] = ("median", [rate(u, name) for u in per_utt.values()])
            out[f"d{name}_utt{suffix}"] = ("mean", [
                rate(u, name) - rate(original[uid], name)
                if rate(u, name) is not None and rate(original.get(uid, {}), name) is not None else None
                for uid, u in per_utt.items()])
    return out


def _paired_tests(vectors: dict, pairs: list[tuple[str, str]], n_boot: int) -> list[dict]:
    from .metrics.stats import paired_ratio_test, paired_test

    out = []
    for a, b in pairs:
        for metric, (kind, va) in vectors[a].items():
            if metric not in vectors[b]:
                continue
            vb = vectors[b][metric][1]
            if kind == "ratio":
                if len(va[0]) != len(vb[0]):  # not the same utterances (an ASR covers other languages)
                    continue
                res = paired_ratio_test(va[0], va[1], vb[0], vb[1], n_boot=n_boot)
            else:
                res = paired_test(va, vb, "median" if kind == "median" else "mean", n_boot=n_boot)
            if res is not None:
                out.append({"a": a, "b": b, "metric": metric, **res})
    return out


def evaluate_systems(
    manifest: str | os.PathLike,
    systems: dict[str, str | os.PathLike],
    data_root: str | os.PathLike | None = None,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    asr="pocketsphinx",
    workers: int = 2,
    utmos_path: str | None = None,
    spk_model: str = "resemblyzer",
    device: str = "cpu",
    job_timeout: float | None = 600.0,
    *,
    normaliser: str = "whisper",
    preset: dict | None = None,
    training_asrs: tuple[str, ...] = (),
    test_set: str | None = None,
    compare: list[tuple[str, str]] | None = None,
    n_boot: int = 1000,
) -> dict:
    """Score each system folder against the manifest; returns the results dictionary.

    ``asr``: one ASR spec or a list (the first fills ``wer`` / ``dwer`` / ...; each one its
    ``by_asr[label]`` entry). ``job_timeout``: seconds one utterance may take (all its metrics
    and the ASRs); longer is that utterance's error. A worker process that dies is replaced and
    the utterance that killed it recorded as failed. A failed utterance stays in the averages at
    the metric's worst value (:data:`WORST`); ``failures`` lists them, ``incomplete`` the
    metrics some utterances have no value of.

    ``spk_model``: a backend of :class:`~speechbrain_codec.metrics.speaker.SpeakerSimilarity`
    (``resemblyzer``, ``wavlm-sv:<id>``, ``wavlm-ecapa:<ckpt>``, or a bare x-vector id / path).
    ``device`` runs the neural ASRs, the speaker model and UTMOS there; the other metric models
    run on the CPU. With a CUDA device, workers are spawned rather than forked.
    ``preset``: the protocol record (:mod:`speechbrain_codec.protocols`) written under
    ``protocol``; ``training_asrs``: ASRs the systems trained against (marked, and a warning
    when no ASR is independent of them); ``compare``: extra ``(a, b)`` system pairs for the
    paired tests (by default the first system against every other one and the original).
    """
    from .metrics.asr import NORMALISERS
    from .metrics.speaker import speaker_backend_name

    asrs = [asr] if isinstance(asr, str) else list(asr)
    asrs = [a for a in asrs if a != "none"] or ["none"]
    unknown = set(metrics) - set(ALL_METRICS)
    if unknown:
        raise CodecError(f"unknown metrics {sorted(unknown)}; choose from {', '.join(ALL_METRICS)}")
    if "utmos" in metrics and not utmos_path:
        raise CodecError("metric utmos needs --utmos PATH (a TorchScript or ONNX UTMOS file)")
    for a in asrs:
        if a != "none" and a.split(":")[0] not in ASR_LANGS:
            raise CodecError(f"unknown ASR {a!r}: use pocketsphinx, whisper:<id or path>, ctc:<id or path> or none")
    if normaliser not in NORMALISERS:
        raise CodecError(f"unknown text normaliser {normaliser!r}; choose from {', '.join(NORMALISERS)}")
    t0 = time.time()
    rows = read_manifest(manifest, data_root)
    for a, b in compare or []:
        for name in (a, b):
            if name != "original" and name not in systems:
                raise CodecError(f"--compare {a}:{b}: no system {name!r} (systems: {', '.join(systems)})")
    jobs = []
    for name, folder in [("original", None), *systems.items()]:
        for uid, row in rows.items():
            deg = row["wav"] if folder is None else str(Path(folder) / f"{uid}.wav")
            jobs.append((name, uid, row["wav"], deg, _lang(row), job_timeout))
    specs = [a for a in asrs if a != "none"]
    labels = asr_labels(specs)
    init = (specs or "none", tuple(metrics), utmos_path, 1 if workers > 1 else 2, spk_model, str(device), normaliser)
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
            logger.warning("%s / %s: not scored (worst value in the averages): %s", name, uid, entry["error"])
    ref_hyps = {label: {uid: (u.get("hyp") if i == 0 else u.get("hyps", {}).get(label))
                        for uid, u in per_system["original"].items() if "error" not in u}
                for i, label in enumerate(labels)}
    results: dict = {"protocol": protocol(tuple(metrics), asrs), "manifest": str(manifest),
                     "test_set": test_set or f"{Path(manifest).parent.name}/{Path(manifest).name} ({len(rows)} utterances)",
                     "systems": {}}
    record = results["protocol"]
    record["normaliser"] = f"{normaliser}: {NORMALISERS[normaliser]}"
    if "spk" in metrics:
        record["spk"] = f"speaker similarity: cosine of {spk_model} embeddings"
        record["speaker_model"] = speaker_backend_name(spk_model)
    if "utmos" in metrics:
        record["mos_predictor"] = f"UTMOS22 strong ({Path(str(utmos_path)).name})"
    elif "dnsmos" in metrics:
        record["mos_predictor"] = "DNSMOS P.835 (speechmos)"
    if specs:
        record["delta_utt"] = (
            "dWER_utt / dCER_utt (FocalCodec-S's dCER, focalcodec_s.md §5.2): per utterance, the error rate of the "
            "system's transcript against the ground truth minus that of the original's, then the mean over the "
            "utterances both have (can be negative)")
        trained = {a.partition(":")[2].rstrip("/").split("/")[-1] or a for a in training_asrs}
        record["training_asrs"] = list(training_asrs)
        record["independent_asrs"] = [lab for lab in labels if lab not in trained]
        if training_asrs and not record["independent_asrs"]:
            record["warning"] = (f"every ASR here ({', '.join(labels)}) is one the systems trained against: add an "
                                 "independent one (--asr)")
            logger.warning(record["warning"])
    if preset:
        record["preset"] = preset
    vectors: dict = {}
    for name, per_utt in per_system.items():
        summary = _summary(per_utt, rows, ref_hyps.get(labels[0], {}) if labels else {}, tuple(metrics),
                           specs[0] if specs else None, normaliser, n_boot)
        if name != "original":
            delta = _delta_utt(per_utt, per_system["original"], n_boot=n_boot)
            summary["ci95"].update(delta.pop("ci95", {}))
            summary.update(delta)
        if len(labels) > 1:
            summary["by_asr"] = {}
            for i, (spec, label) in enumerate(zip(specs, labels)):
                if i == 0:
                    entry = {k: summary.get(k) for k in INTEL_KEYS}
                    entry["ci95"] = {k: v for k, v in summary["ci95"].items() if k in INTEL_KEYS}
                else:
                    entry, _ = _intel(per_utt, rows, ref_hyps[label], label, False, spec, normaliser, n_boot)
                    if name != "original":
                        delta = _delta_utt(per_utt, per_system["original"], label, n_boot)
                        entry["ci95"].update(delta.pop("ci95"))
                        entry.update(delta)
                    entry["ci95"] = {k: v for k, v in entry["ci95"].items() if v is not None}
                entry["asr"] = spec
                entry["trained_against"] = bool(training_asrs) and label not in record.get("independent_asrs", labels)
                summary["by_asr"][label] = entry
        folder = systems.get(name)
        for facts in ("bitrate.json", "system.json"):  # measured rates; facts a recipe records (stage, ...)
            if folder is not None and (Path(folder) / facts).is_file():
                summary.update(json.loads((Path(folder) / facts).read_text()))
        results["systems"][name] = {"summary": summary, "utterances": per_utt}
        vectors[name] = _vectors(per_utt, rows, ref_hyps, per_system["original"], tuple(metrics), specs, labels,
                                 normaliser)
    names = list(systems)
    pairs = [(names[0], other) for other in [*names[1:], "original"]] if names else []
    pairs += [p for p in compare or [] if p not in pairs]
    results["paired"] = _paired_tests(vectors, pairs, n_boot)
    results["wall_seconds"] = round(time.time() - t0, 2)
    results["workers"] = workers
    return results


def _resolve_spec(spec: str, role: str, protocol: str, paths: dict, model_dir: str | None) -> str:
    """``kind:<hub id>`` with the hub id replaced by its local path (or kept where it can load)."""
    from .protocols import resolve_model

    kind, sep, source = spec.partition(":")
    if not sep or not source or kind == "pocketsphinx":
        return spec
    if kind == "wavlm-ecapa":
        ckpt, _, ssl = source.partition("@")
        out = resolve_model(ckpt, role, protocol, paths, model_dir)
        return f"{kind}:{out}" + (f"@{resolve_model(ssl, role + ' (WavLM-large)', protocol, paths, model_dir)}" if ssl else "")
    return f"{kind}:{resolve_model(source, role, protocol, paths, model_dir)}"


def settings_from_args(args) -> dict:
    """The evaluation settings: a ``--protocol`` preset's, overridden by the options given
    (each override recorded under ``modified``), models resolved to local paths."""
    from .protocols import UTMOS_ID, get_protocol, resolve_model

    paths = {}
    for spec in args.model or []:
        key, sep, path = spec.partition("=")
        if not sep:
            raise CodecError(f"--model {spec}: expected ID=PATH (a hub id or file name of the protocol, and its local copy)")
        paths[key] = path
    preset = get_protocol(args.protocol) if args.protocol else None
    metrics_given = args.metrics is not None
    if args.metrics == "all":
        metrics = tuple(m for m in ALL_METRICS if m != "utmos")
    elif metrics_given:
        metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    else:
        metrics = preset.metrics if preset else DEFAULT_METRICS
    asrs = tuple(args.asr) if args.asr else (preset.asrs if preset else ("pocketsphinx",))
    spk = args.spk_model or (preset.spk if preset and preset.spk else "resemblyzer")
    normaliser = args.normaliser or (preset.normaliser if preset else "whisper")
    training = tuple(args.training_asr or (preset.training_asrs if preset else ()))
    name = args.protocol or "custom"
    resolved = {"metrics": metrics, "asrs": tuple(_resolve_spec(a, "ASR", name, paths, args.model_dir) for a in asrs),
                "spk_model": spk, "normaliser": normaliser, "training_asrs": training, "utmos": args.utmos}
    if "spk" in metrics and spk != "resemblyzer":
        resolved["spk_model"] = _resolve_spec(spk if ":" in spk else f"wavlm-sv:{spk}", "speaker model", name, paths,
                                              args.model_dir)
    if "utmos" in metrics and not args.utmos:
        resolved["utmos"] = resolve_model(preset.utmos if preset and preset.utmos else UTMOS_ID, "MOS predictor (UTMOS)",
                                          name, paths, args.model_dir)
    record = None
    if preset:
        modified = {}
        if metrics_given and set(metrics) != set(preset.metrics):
            modified["metrics"] = list(metrics)
        if args.asr and tuple(args.asr) != preset.asrs:
            modified["asrs"] = list(args.asr)
        if args.spk_model and args.spk_model != preset.spk:
            modified["spk_model"] = args.spk_model
        if args.normaliser and args.normaliser != preset.normaliser:
            modified["normaliser"] = args.normaliser
        record = {**preset.describe(), "modified": modified,
                  "models": {a: r for a, r in zip(asrs, resolved["asrs"]) if a != r}}
    resolved["preset"] = record
    return resolved


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .protocols import PROTOCOLS

    p = argparse.ArgumentParser(prog="speechbrain-codec evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--data-root", default=None)
    p.add_argument("--system", action="append", default=[], metavar="NAME=FOLDER")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default=None,
                   help="a published protocol's preset (ASR, normaliser, decoding, speaker model, MOS predictor); "
                        "the options below override it (recorded as 'modified')")
    p.add_argument("--metrics", default=None,
                   help=f"comma-separated, from {','.join(ALL_METRICS)}; 'all' for every offline one "
                        f"(default: the protocol's, else {','.join(DEFAULT_METRICS)})")
    p.add_argument("--asr", action="append", default=None,
                   help="pocketsphinx | whisper:<id or path> | ctc:<id or path> | none; repeat for more ASRs (the "
                        "first fills the WER / dWER columns; default: the protocol's, else pocketsphinx)")
    p.add_argument("--training-asr", action="append", default=None,
                   help="an ASR the systems trained against (repeatable): marked in the report")
    p.add_argument("--normaliser", default=None, help="text normaliser: whisper | whisper+jiwer | focalcodec_s | basic")
    p.add_argument("--utmos", default=None, help="UTMOS22 strong as a TorchScript (.pt) or ONNX (.onnx) file")
    p.add_argument("--spk-model", default=None,
                   help="resemblyzer | wavlm-sv:<id or path> | wavlm-ecapa:<checkpoint>[@<WavLM-large>] | an x-vector id/path")
    p.add_argument("--model", action="append", default=None, metavar="ID=PATH",
                   help="a local copy of a model the protocol names (e.g. openai/whisper-large-v3=/models/whisper)")
    p.add_argument("--model-dir", default=None, help="folder holding the protocol's models as <DIR>/<name>")
    p.add_argument("--test-set", default=None, help="name of the test set (results.json, leaderboard rows)")
    p.add_argument("--compare", action="append", default=[], metavar="A:B", help="extra pair of systems to test")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals and tests")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--job-timeout", type=float, default=600.0,
                   help="seconds one utterance may take (metrics + ASR) before it is recorded as failed")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or mps: where the neural models run")
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
    compare = []
    for spec in args.compare:
        a, sep, b = spec.partition(":")
        if not sep:
            raise CodecError(f"--compare {spec}: expected A:B (two system names)")
        compare.append((a, b))
    st = settings_from_args(args)
    asr = list(st["asrs"]) if len(st["asrs"]) > 1 else st["asrs"][0]
    results = evaluate_systems(args.manifest, systems, args.data_root, st["metrics"], asr, args.workers, st["utmos"],
                               st["spk_model"], device, args.job_timeout, normaliser=st["normaliser"],
                               preset=st["preset"], training_asrs=st["training_asrs"], test_set=args.test_set,
                               compare=compare, n_boot=args.bootstrap)
    atomic_write_json(args.out, results)
    print(f"evaluated {len(systems) + 1} systems x {len(read_manifest(args.manifest))} utterances with "
          f"{args.workers} workers in {results['wall_seconds']} s -> {args.out}")
    return 0
