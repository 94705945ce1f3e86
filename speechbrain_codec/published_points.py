"""Published numbers beside ours in the leaderboard, each with the spec section it comes from.

Values are copied as the specs print them (percentages in %, as in the papers' tables); the
leaderboard converts ``PERCENT_KEYS`` to fractions like our results. Each point names the
protocol and test set it was measured under: the leaderboard puts it only in that protocol's
section, and every row shows its test set. The metric keys are ours where the definition is the
same (``dcer_utt``: FocalCodec-S's per-utterance dCER, focalcodec_s.md §5.2); where a spec says the
definition is unknown, the point's ``note`` says so.
"""

from __future__ import annotations

__all__ = ["POINTS", "PERCENT_KEYS", "points"]

PERCENT_KEYS = {"dcer_utt", "dwer_utt", "dwer", "wer", "wer_median", "cer"}

_FCS_NOTE = ("MOS_Q predictor, PESQ mode and resampling are unpublished (focalcodec_s.md §5.3); "
             "2000 test utterances (§5.4)")
_FCS_EN_NOTE = ("English dWER from the unreleased metrics_evaluator_v3.py, definition unknown, possibly Whisper-small "
                "(the training ASR; §5.3, §6.1 item 12); shown in the dWER_utt column as the recipe's table does")


def _fcs(lang: str, rows: list[tuple]) -> list[dict]:
    test = "AISHELL-1 test (first 2000)" if lang == "zh" else "LibriSpeech test-clean (first 2000)"
    key = "dcer_utt" if lang == "zh" else "dwer_utt"
    out = []
    for exp, rate, intel, mos, pesq, stoi in rows:
        out.append({"system": f"FocalCodec-S {exp}", "protocol": "focalcodec_s", "test_set": test, "bitrate": rate,
                    "bitrate_kind": "nominal (11 bits x token rate)",
                    "metrics": {key: intel, "mos_q": mos, "pesq_wb": pesq, "stoi": stoi},
                    "source": f"focalcodec_s.md §6 ({'AISHELL-1' if lang == 'zh' else 'LibriSpeech test-clean'} table)",
                    "note": _FCS_NOTE if lang == "zh" else f"{_FCS_NOTE}; {_FCS_EN_NOTE}"})
    return out


POINTS: list[dict] = [
    # FocalCodec-S (Jie-shiang/Training_FocalCodec README "Full Results Table")
    *_fcs("zh", [("pretrained", 550, 25.29, 2.781, 1.154, 0.685), ("E stage 1", 550, 6.17, 2.961, 1.259, 0.726),
                 ("F stage 1", 550, 7.51, 2.893, 1.312, 0.738), ("E stage 2", 275, 13.33, 2.739, 1.223, 0.701),
                 ("F stage 2", 275, 14.47, 2.681, 1.235, 0.699), ("G", 275, 17.39, 2.651, 1.203, 0.691),
                 ("H", 275, 16.42, 2.707, 1.209, 0.695), ("I", 275, 16.56, 2.954, 1.193, 0.688),
                 ("J", 275, 4.15, 1.589, 1.091, 0.601), ("E stage 3", 137.5, 43.60, 2.421, 1.159, 0.634),
                 ("K", 137.5, 16.03, 1.330, 1.066, 0.388)]),
    *_fcs("en", [("pretrained", 550, 1.64, 3.706, 1.241, 0.804), ("E stage 1", 550, 3.87, 3.319, 1.165, 0.749),
                 ("E stage 2", 275, 30.57, 2.953, 1.118, 0.673), ("G", 275, 10.10, 3.021, 1.166, 0.742),
                 ("H", 275, 11.78, 3.068, 1.170, 0.744), ("I", 275, 11.34, 3.307, 1.162, 0.739),
                 ("J", 275, 3.02, 1.998, 1.098, 0.668), ("E stage 3", 137.5, 96.21, 2.507, 1.083, 0.574),
                 ("K", 137.5, 10.01, 1.437, 1.059, 0.409)]),
    # DP-SLM Figure 4 (dp-slm/wer_vs_bitrate.svg), recovered from the path coordinates
    *[{"system": f"DP-SLM K={k} λ={lam}", "protocol": "dpslm", "test_set": "LibriSpeech (exact set not stated)",
       "bitrate": rate, "bitrate_kind": "after dedup (R x H, dpslm.md §2.7)", "metrics": {"wer_median": wer},
       "source": "dpslm.md §5 (Figure 4 table)",
       "note": "median per-utterance WER, ASR not named; values read from the figure (±0.5 b/s, ±0.05 % abs.)"
               + ("; bitrate from the marker of a collinear point (≈ 241)" if (k, lam) == (1000, 3800) else "")}
      for k, lam, rate, wer in [
          (100, 0, 192.0, 11.11), (100, 600, 176.6, 11.11), (100, 1500, 159.4, 11.54), (100, 3000, 137.7, 11.54),
          (100, 5000, 118.3, 12.50), (100, 9000, 98.5, 15.63), (200, 0, 243.4, 8.33), (200, 700, 222.8, 9.09),
          (200, 1500, 204.2, 9.68), (200, 3000, 175.3, 10.00), (200, 5000, 146.8, 9.09), (200, 7500, 124.5, 8.82),
          (500, 0, 319.8, 7.55), (500, 600, 294.8, 7.14), (500, 1500, 264.8, 7.69), (500, 2800, 229.1, 7.41),
          (500, 4500, 193.9, 6.67), (500, 7000, 160.0, 7.41), (1000, 0, 386.4, 5.26), (1000, 600, 355.6, 5.88),
          (1000, 1400, 319.7, 6.25), (1000, 2500, 279.0, 6.67), (1000, 3800, 241.0, 6.67),
          (1000, 6000, 199.8, 6.67)]],
    # LM-loss codec: the listening test is the only published result in the repository
    *[{"system": f"LM-loss 2_5 {name}", "protocol": "lmloss (listening test)", "test_set": "LJSpeech LJ021-LJ024, "
       "10 MUSHRA / 15 semantic items", "bitrate": 187.5, "bitrate_kind": "nominal (lmloss.md §2.2)",
       "metrics": {"mushra": mushra, "semantic_mos": sem}, "source": "lmloss.md §6.1",
       "note": "read from the summary plot (± ~0.2 MUSHRA / 0.005 MOS); the paper's objective tables are not in the repo"}
      for name, mushra, sem in [("ASR loss", 72.7, 6.30), ("TTR loss", 71.2, 5.84), ("SD", 70.0, 5.56),
                                ("stage 2", 59.7, 5.51)]],
    # SIREN: single-file DNSMOS, the only numbers with a bitrate
    {"system": "SIREN legacy ultra200bps", "protocol": "siren (single-file DNSMOS)", "test_set": "data/jakubie.wav (1 file)",
     "bitrate": 195.0, "bitrate_kind": "entropy estimate (355 raw)", "metrics": {"dnsmos": 2.10},
     "source": "siren.md §5 (task_backup.md)", "note": "one file; the README's MOS 3.2 is an estimate, not shown"},
    {"system": "SIREN BitNet large (step 9000)", "protocol": "siren (single-file DNSMOS)",
     "test_set": "data/jakubie.wav (1 file)", "bitrate": 200.0, "bitrate_kind": "entropy estimate (~200; 356 raw)",
     "metrics": {"dnsmos": 2.23}, "source": "siren.md §5 (task_backup.md)", "note": "one file"},
    # classical baselines measured offline (pocketsphinx), LibriSpeech test-other
    *[{"system": name, "protocol": "offline", "test_set": "LibriSpeech test-other (100 clips, 10 speakers)",
       "bitrate": rate, "bitrate_kind": "payload", "metrics": {"pesq_wb": pesq, "stoi": stoi, "wer": wer},
       "source": "EVALUATION_NOTES.md (Reference figures)", "kind": "baseline",
       "note": "pocketsphinx WER against the ground truth (the original scores 60.7 %)"}
      for name, rate, pesq, stoi, wer in [("Codec2 700C", 798, 1.32, 0.722, 93.8), ("Codec2 3200", 3197, 1.56, 0.852, 85.1),
                                          ("Opus 6k", 5387, 2.01, 0.882, 85.6)]],
]


def points() -> list[dict]:
    """The published points with percentages as fractions (as in results.json)."""
    out = []
    for p in POINTS:
        q = dict(p, metrics={k: v / 100 if k in PERCENT_KEYS else v for k, v in p["metrics"].items()})
        q.setdefault("kind", "published")
        out.append(q)
    return out
