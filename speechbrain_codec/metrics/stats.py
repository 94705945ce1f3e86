"""Confidence intervals over utterances and paired tests between systems.

Every system of a table is scored on the same utterances, so two systems can be compared
utterance by utterance. Intervals are percentile bootstrap intervals over utterances (seeded:
the same resamples for every system and metric of a run, so a rerun gives the same numbers);
a corpus-level error rate (errors summed over utterances / reference words summed) is
resampled as that ratio, a per-utterance metric as its mean (or median).

Paired tests between systems A and B on the same utterances:

* **paired bootstrap** (Koehn, 2004; resampling utterances, both systems' values together):
  the 95 % interval of the difference and a two-sided p-value,
  ``min(1, 2 * min(P*(d <= 0), P*(d >= 0)))``;
* **Wilcoxon signed-rank** (scipy, two-sided, zero differences dropped) on the per-utterance
  differences of a per-utterance metric (not defined for a corpus-level ratio).
"""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_ci", "ratio_ci", "paired_test", "paired_ratio_test", "resample_indices",
           "N_BOOTSTRAP", "SEED"]

N_BOOTSTRAP = 1000
SEED = 0


def resample_indices(n: int, n_boot: int = N_BOOTSTRAP, seed: int = SEED) -> np.ndarray:
    """``[n_boot, n]`` utterance indices drawn with replacement (the same for a given n and seed)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def _interval(samples: np.ndarray, level: float) -> list[float]:
    lo, hi = np.percentile(samples, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def bootstrap_ci(values, statistic: str = "mean", level: float = 0.95, n_boot: int = N_BOOTSTRAP,
                 seed: int = SEED) -> list[float] | None:
    """Percentile bootstrap interval of the mean (or ``"median"``) of per-utterance values.

    Example
    -------
    >>> lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    >>> lo < 2.5 < hi
    True
    >>> bootstrap_ci([2.0, 2.0])
    [2.0, 2.0]
    """
    x = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not len(x):
        return None
    stat = np.median if statistic == "median" else np.mean
    return _interval(stat(x[resample_indices(len(x), n_boot, seed)], axis=1), level)


def ratio_ci(errors, words, level: float = 0.95, n_boot: int = N_BOOTSTRAP, seed: int = SEED) -> list[float] | None:
    """Interval of a corpus-level rate ``sum(errors) / sum(words)``, utterances resampled.

    >>> ratio_ci([1, 0, 2], [0, 0, 0]) is None
    True
    """
    e, w = np.asarray(errors, dtype=np.float64), np.asarray(words, dtype=np.float64)
    if not len(e) or w.sum() == 0:
        return None
    idx = resample_indices(len(e), n_boot, seed)
    den = w[idx].sum(1)
    rates = np.where(den > 0, e[idx].sum(1) / np.maximum(den, 1), np.nan)
    return _interval(rates[~np.isnan(rates)], level)


def _bootstrap_p(diffs: np.ndarray) -> float:
    return float(min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0))))


def paired_test(a, b, statistic: str = "mean", level: float = 0.95, n_boot: int = N_BOOTSTRAP,
                seed: int = SEED) -> dict | None:
    """Paired comparison of two systems' per-utterance values (same utterances, same order;
    pairs where either is None are left out).

    Returns ``{"difference": stat(a) - stat(b), "ci95": [lo, hi], "p_bootstrap": p,
    "p_wilcoxon": p, "utterances": n}``.

    Example
    -------
    >>> r = paired_test([3.0, 3.1, 2.9, 3.2, 3.0, 3.1], [2.0, 2.2, 1.9, 2.1, 2.0, 2.3])
    >>> round(r["difference"], 3), r["p_bootstrap"] < 0.01, r["ci95"][0] > 0
    (0.967, True, True)
    """
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return None
    x, y = (np.asarray(v, dtype=np.float64) for v in zip(*pairs))
    stat = np.median if statistic == "median" else np.mean
    idx = resample_indices(len(x), n_boot, seed)
    diffs = stat(x[idx], axis=1) - stat(y[idx], axis=1)
    d = x - y
    if np.all(d == 0):
        p_w = 1.0
    else:
        from scipy.stats import wilcoxon

        p_w = float(wilcoxon(d[d != 0]).pvalue) if np.count_nonzero(d) > 0 else 1.0
    return {"difference": float(stat(x) - stat(y)), "ci95": _interval(diffs, level), "p_bootstrap": _bootstrap_p(diffs),
            "p_wilcoxon": p_w, "utterances": int(len(x)), "resamples": n_boot}


def paired_ratio_test(errors_a, words_a, errors_b, words_b, level: float = 0.95, n_boot: int = N_BOOTSTRAP,
                      seed: int = SEED) -> dict | None:
    """Paired bootstrap of the difference of two corpus-level rates over the same utterances
    (``words`` may differ: dWER counts the original's transcript's words)."""
    ea, wa, eb, wb = (np.asarray(v, dtype=np.float64) for v in (errors_a, words_a, errors_b, words_b))
    if not len(ea) or wa.sum() == 0 or wb.sum() == 0:
        return None
    idx = resample_indices(len(ea), n_boot, seed)
    da, db = wa[idx].sum(1), wb[idx].sum(1)
    ok = (da > 0) & (db > 0)
    diffs = (ea[idx].sum(1) / np.maximum(da, 1) - eb[idx].sum(1) / np.maximum(db, 1))[ok]
    return {"difference": float(ea.sum() / wa.sum() - eb.sum() / wb.sum()), "ci95": _interval(diffs, level),
            "p_bootstrap": _bootstrap_p(diffs), "p_wilcoxon": None, "utterances": int(len(ea)), "resamples": n_boot}
