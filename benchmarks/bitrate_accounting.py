#!/usr/bin/env python3
"""Bitrate accounting for every published configuration of the five reproduced systems.

Each configuration is declared as a :class:`~speechbrain_codec.streams.StreamLayout` built from
the hyperparameters in the reproduction specs (``../shared/specs/*.md``; every value carries a
comment naming the spec file and section), so the bit rate is derived, never typed:

* nominal b/s = sum over frame / unit streams of ``frame_rate x sum_k log2 N_k`` (FSQ: N = the
  product of the levels, one codebook per residual stage; BSQ: N = 2^bits);
* side information (a per-utterance speaker code) in bits per utterance, and the nominal rate
  with it spread over 3 s and 10 s utterances;
* variable-rate unit streams (DP-SLM): the rate is ``R x H`` (R = units per second after
  deduplication, H = bits per unit), measured on data; the layout gives the pre-deduplication
  upper bound ``50 Hz x log2 K`` and the published (measured) figure is checked against it.

The mini recipe's codecs (``recipes/mini/hparams/codec/*.yaml``) are built with hyperpyyaml and
accounted from ``codec.layout`` (or, where ``Codec`` has no ``layout`` yet, one ``tokens`` stream
of ``codec.codebook_sizes`` at ``codec.hop_length``), and checked against the figure typed in
each file's header comment.

Every derived figure is compared with the published one where the source states one:

* ``equal``   the published figure must match (within its rounding);
* ``differs`` a published claim the spec documents as wrong: printed as a MISMATCH, expected;
* ``at_most`` a measured (entropy-coded or deduplicated) figure: must not exceed the nominal bound.

Mismatches are printed loudly; the script exits 1 if any is not one the spec documents (or if a
claim documented as wrong turns out to match). Writes ``benchmarks/results/bitrate_accounting.
{json,md}`` (the Markdown is what the README includes).

    python benchmarks/bitrate_accounting.py            # print, check, save
    python benchmarks/bitrate_accounting.py --no-mini  # published systems only (no torch)
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from speechbrain_codec.streams import StreamLayout, StreamSpec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
AMORTISE = (3.0, 10.0)  # utterance durations side information is spread over, seconds
SPECS = "../shared/specs"  # the reproduction specs, relative to the repository root

LMLOSS = f"{SPECS}/lmloss.md"
FOCAL = f"{SPECS}/focalcodec_s.md"
SIREN = f"{SPECS}/siren.md"
LEARN = f"{SPECS}/learnable_speech.md"
DPSLM = f"{SPECS}/dpslm.md"


# --------------------------------------------------------------------------------------------
# data model


@dataclass
class Claim:
    """A figure a source states for a configuration, and what we expect of it."""

    value: float
    label: str                # what the source says, in its words
    source: str               # where (spec file and section)
    expect: str = "equal"     # "equal" | "differs" | "at_most"
    tol: float = 0.05         # half a unit of the published figure's last digit
    against: str = "nominal"  # "nominal" | "stream:<name>" (one stream's nominal rate)
    note: str = ""


@dataclass
class Config:
    system: str
    name: str
    layout: StreamLayout
    source: str               # where the hyperparameters come from
    claims: list[Claim] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    group: str = "published"  # "published" | "mini"
    arithmetic: list[str] = field(default_factory=list)  # further derivation lines shown with the streams


def fsq(*levels: int) -> int:
    """Codes of one FSQ stage: the product of its levels."""
    return math.prod(levels)


def fmt(x: float) -> str:
    """``25.0 -> "25"``, ``186.8579 -> "186.86"``."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------------------------
# LM-loss codec (Yi & Kim, ICASSP 2026)


def lmloss() -> list[Config]:
    sr = 16000                      # lmloss.md §1.1: every clip resampled to 16 kHz
    hubert_hop = 320                # lmloss.md §1.3: HuBERT-base layer 6, 50 Hz
    content_hop = hubert_hop * 2    # lmloss.md §2.1/§2.3: HuBERT VQ-VAE encoder /2 -> 25 Hz
    f0_hop = 80 * 16                # lmloss.md §1.3: YAAPT 5 ms = 200 Hz; §2.3: F0 encoder /16 -> 12.5 Hz
    f0_codes = 32                   # lmloss.md §2.3 table: F0 codebook 32 x 128
    published = {"2_5": 187.5, "2_6": 212.5}  # lmloss.md §2.2 "Bitrate arithmetic" (spec-derived)
    out = []
    for cfg, content_codes in (("2_5", 32), ("2_6", 64)):  # lmloss.md §2.3: 32 (2_5) or 64 (2_6)
        layout = StreamLayout([
            StreamSpec("content", (content_codes,), content_hop),
            StreamSpec("f0", (f0_codes,), f0_hop),
            # speaker: one learned 128-d vector (lmloss.md §2.5), a model parameter, not sent: 0 b
        ], sr)
        out.append(Config(
            "LM-loss codec", f"{cfg} (stage 2 and the ASR / TTR / SD fine-tunes)", layout,
            f"{LMLOSS} §2.1-§2.3",
            [Claim(published[cfg], f"{fmt(published[cfg])} bps (spec arithmetic; the paper's own statement is not in the repo)",
                   f"{LMLOSS} §2.2")],
            ["speaker: one learned vector (single-speaker LJSpeech), part of the model, 0 b sent (lmloss.md §2.2, §2.5)"]
            + (["the listening test uses only 2_5 (lmloss.md §2.2, §5.4)"] if cfg == "2_5" else []),
        ))
    return out


# --------------------------------------------------------------------------------------------
# FocalCodec / FocalCodec-S (Jie-shiang/Training_FocalCodec on lucadellalib/focalcodec)


def focalcodec() -> list[Config]:
    sr = 16000          # focalcodec_s.md §0: input 16 kHz (output 24 kHz: no effect on the bit count)
    base_hop = 320      # focalcodec_s.md §0: 50 Hz tokens at 16 kHz
    out = []
    # focalcodec_s.md §2.1 table: stage 1/2/3 = compressor down factors (1,1,1), (1,1,1,2), (1,1,1,2,2)
    stages = [("stage 1 (pretrained base; Exp E/F)", 1, 550.0), ("stage 2, Exp E/F/G/H/I/J", 2, 275.0),
              ("stage 3, Exp E/K", 4, 137.5)]  # bitrates: focalcodec_s.md §2.1 and §6 README table
    for name, down, pub in stages:
        layout = StreamLayout([StreamSpec("tokens", (2 ** 11,), base_hop * down)], sr)  # §0: BSQ 2048 = 2^11
        claims = [Claim(pub, f"{fmt(pub)} bps (README results table)", f"{FOCAL} §2.1, §6")]
        if down == 4:
            claims.append(Claim(150.0, "eval_stage3.py prints '12 bits / 150 bps'", f"{FOCAL} §6.1 item 5",
                                "differs", note="the script's own print; correct is 11 bits / 137.5 bps"))
        out.append(Config("FocalCodec-S", f"focalcodec_50hz_2k_causal, {name} ({fmt(sr / base_hop / down)} Hz)",
                          layout, f"{FOCAL} §0, §2.1", claims))
    # focalcodec_s.md §2.1 note / §7 item 1: the non-causal 8192-code (13-bit) 50/25/12.5 Hz checkpoints
    for hz, hop, pub in ((50, 320, 650.0), (25, 640, 325.0), (12.5, 1280, 162.5)):
        layout = StreamLayout([StreamSpec("tokens", (2 ** 13,), hop)], sr)
        out.append(Config("FocalCodec", f"non-causal {fmt(hz)} Hz, 8192 codes (13 bits)", layout,
                          f"{FOCAL} §2.1 (note), §7 item 1",
                          [Claim(pub, f"{fmt(pub)} bps", f"{FOCAL} §2.1 (note)")],
                          ["base-model figures quoted by the spec 'for comparison'; not fine-tuned by this recipe"]))
    return out


# --------------------------------------------------------------------------------------------
# SIREN (Krabbens/SIREN)


def siren() -> list[Config]:
    sr = 16000                     # siren.md §1.2: 16 kHz
    hubert_hop = 320               # siren.md §1.2: HuBERT-base L9, 50 Hz (stride 320)
    speaker_pq = (256,) * 8        # siren.md §2.3: product quantiser, 8 groups x 256 codes = 64 bits/utterance
    speaker_fsq = (fsq(8, 8, 8, 8),)  # siren.md §2.3: V8 speaker FSQ [8,8,8,8] = 12 bits/utterance
    s23 = f"{SIREN} §2.7"

    def layout(sem_levels, sem_stages, sem_tc, pro_levels, pro_stages, pro_tc, speaker):
        """siren.md §2: semantic / prosody rates = 50 / temporal_compression (hop 320 x tc);
        residual FSQ: one codebook of prod(levels) codes per stage (§2.3)."""
        streams = [StreamSpec("semantic", (fsq(*sem_levels),) * sem_stages, hubert_hop * sem_tc)]
        if pro_levels:
            streams.append(StreamSpec("prosody", (fsq(*pro_levels),) * pro_stages, hubert_hop * pro_tc))
        if speaker:
            streams.append(StreamSpec("speaker", speaker, kind="utterance"))
        return StreamLayout(streams, sr)

    readme_68 = "README '~68 bps'"
    out = [
        # siren.md §0 item 1: the README's own hyperparameters ([8,5,5,5], 2 residual stages, 16000/320/8
        # = 6.25 tokens/s), computed correctly; its arithmetic counts this one stream and no speaker code
        Config("SIREN", "README hyperparameters as stated ([8,5,5,5] x 2 stages at 6.25 Hz; one stream, as its arithmetic)",
               layout((8, 5, 5, 5), 2, 8, None, 0, 0, None), f"{SIREN} §0 item 1",
               [Claim(68.0, readme_68, f"{SIREN} §0 item 1", "differs",
                      note="README writes 6.25 x (20/2) = 68, but 6.25 x 10 = 62.5 and the /2 is unjustified")],
               ["no config uses [8,5,5,5] with 2 stages at an 8x reduction (siren.md §0 item 1)",
                "the README's figure leaves out the prosody stream and the 64-bit speaker code"]),
        # siren.md §0 item 1: the spec's guess (not documented) of how 68 could arise
        Config("SIREN", "spec's guess for '68': one 6.25 Hz [8,5,5,5] stream + 64-bit speaker code over 10 s",
               layout((8, 5, 5, 5), 1, 8, None, 0, 0, speaker_pq), f"{SIREN} §0 item 1",
               [Claim(68.0, readme_68 + " vs. this layout with side info over 10 s", f"{SIREN} §0 item 1",
                      tol=1.0, against="amortised:10", note="a guess, not documented; ~68 only if utterances are ~10 s")],
               ["a reading of the README claim, not a configuration that exists in the code"]),
        Config("SIREN", "v0.1.0 default.yaml (P1, README era; the only [8,5,5,5] config)",
               layout((8, 5, 5, 5), 1, 4, (8, 5, 5, 5), 1, 8, speaker_pq), s23,
               [Claim(186.9, "186.9 (spec)", s23),
                Claim(68.0, readme_68, f"{SIREN} §0 item 1", "differs",
                      note="the honest figure for the README-era config is 186.9 b/s + 64 bits/utterance")],
               ["semantic 12.5 Hz (tc 4), prosody 6.25 Hz (tc 8), single FSQ stage each (siren.md §0, §2.7)"]),
        Config("SIREN", "v0.1.0 improved / multispeaker / improved_ljspeech",
               layout((3,) * 8, 4, 4, (3,) * 8, 4, 8, speaker_pq), s23, [Claim(951.0, "951.0 (spec)", s23)]),
        Config("SIREN", "sub100bps.yaml, configs/finetune_correct.yaml",
               layout((8,) * 8, 3, 2, (8,) * 8, 3, 8, speaker_pq), s23,
               [Claim(2250.0, "author's task log '2250 bps raw'", s23),
                Claim(100.0, "file name 'sub-100 bps'", s23, "differs", tol=0.5, note="the spec: 'sub-100 bps' is false")]),
        Config("SIREN", "legacy ultra200bps.yaml, ultra200bps_gan.yaml",
               layout((6,) * 6, 2, 6, (6,) * 6, 2, 16, (64,) * 4), s23,  # siren.md §2.7: speaker 4x6 = 24 bits
               [Claim(355.4, "355.4 (spec)", s23),
                Claim(355.0, "task log '355 b/s raw'", f"{SIREN} §5", tol=0.5),
                Claim(200.0, "file name 'ultra200bps'", s23, "differs", tol=0.5),
                Claim(125.0, "config comment '100 + 25 = 125'", s23, "differs", tol=0.5, note="stale comment"),
                Claim(213.0, "log: 195-213 b/s after entropy estimation", s23, "at_most", tol=0.5),
                Claim(142.0, "task log: entropy-estimated 142 b/s (100 k steps)", f"{SIREN} §4", "at_most", tol=0.5)],
               ["semantic 50/6 = 8.33 Hz, prosody 50/16 = 3.125 Hz (siren.md §2.7)",
                "the entropy-estimated figures leave out the speaker code"]),
        Config("SIREN", "ultra200bps_large.yaml (HEAD, P2)",
               layout((3, 3, 3, 3), 1, 2, (3, 3, 3, 3), 1, 8, speaker_pq), s23,
               [Claim(198.1, "198.1 (spec)", s23), Claim(197.0, "config '~197'", s23, tol=2.0, note="approximate")]),
        Config("SIREN", "ultra200bps_tiny_adapt.yaml",
               layout((5, 5, 5, 5), 3, 2, (5, 5, 5, 5), 3, 8, speaker_pq), s23,
               [Claim(870.7, "870.7 (spec)", s23),
                Claim(200.0, "file name '200 bps'", s23, "differs", tol=0.5)],
               ["ADAPTATION_GUIDE points the step_87000 checkpoint at this config, unpinned (siren.md §7 item 12)"]),
        Config("SIREN", "legacy ultra200bps_flow.yaml",
               layout((5,) * 8, 3, 2, (5,) * 8, 3, 8, speaker_pq), s23,
               [Claim(1741.0, "1741 (spec)", s23, tol=0.5),
                Claim(200.0, "file name 'ultra200bps'", s23, "differs", tol=0.5)]),
        Config("SIREN", "V8 ultra58bps_16k.yaml",
               layout((4, 4, 4, 4), 1, 4, (3, 3), 1, 16, speaker_fsq), s23,
               [Claim(109.9, "config header '109.9'", s23),
                Claim(58.0, "file name '58 bps'", s23, "differs", tol=0.5, note="stale file name")]),
        Config("SIREN", "V8 ultra200bps_16k.yaml, ultra230bps_16k.yaml",
               layout((6, 6, 4, 4), 1, 2, (4, 4), 1, 10, speaker_fsq), s23,
               [Claim(249.2, "249.2 (spec)", s23),
                Claim(230.0, "file name '230' (semantic stream only)", s23, tol=1.0, against="stream:semantic",
                      note="'230' counts the semantic stream alone"),
                Claim(230.0, "file name '230' as the total", s23, "differs", tol=0.5),
                Claim(200.0, "file name '200'", s23, "differs", tol=0.5)],
               ["prosody 50/10 = 5 Hz (siren.md §2.7)"]),
        Config("SIREN", "V8 ultra250bps_16k.yaml",
               layout((6, 6, 10, 10), 1, 2, (4, 4), 1, 10, speaker_fsq), s23,
               [Claim(315.3, "315.3 (spec)", s23),
                Claim(250.0, "file name '250'", s23, "differs", tol=0.5)]),
    ]
    for c in out:
        c.notes.append("V8 configs: trainer and conditioning module missing from the repo (siren.md §0)"
                       if c.name.startswith("V8") else "")
        c.notes = [n for n in c.notes if n]
    return out


# --------------------------------------------------------------------------------------------
# Learnable-Speech (primepake/learnable-speech)


def learnable_speech() -> list[Config]:
    sr = 16000              # learnable_speech.md §1.3: S3Tokenizer input resampled to 16 kHz
    hop = 160 * 2 * 2       # §1.3: mel hop 160 (100 Hz), two stride-2 convs -> 25 Hz
    codes = fsq(*(3,) * 8)  # §1.3: FSQ 8 dims rounded to {-1, 0, 1} -> 3^8 = 6561 codes
    layout = StreamLayout([StreamSpec("s3_tokens", (codes,), hop)], sr)
    return [Config("Learnable-Speech", "S3Tokenizer speech_tokenizer_v2_25hz token stream", layout,
                   f"{LEARN} §1.3, §2.7",
                   [Claim(317.0, "317 b/s (spec)", f"{LEARN} §1.3, §2.7",
                          note="derived by the spec; the README states no bitrate")],
                   ["a TTS system, not a codec: the LM predicts these tokens from text (learnable_speech.md §0)",
                    "speaker: a continuous 192-d embedding of a reference mel (§2.5), not quantised: no bit count defined",
                    "DAC-VAE latents are continuous (75 x 64 or 50 x 80 floats/s): no bitrate (§2.7)"])]


# --------------------------------------------------------------------------------------------
# DP-SLM (Visser & Kamper, Interspeech 2025)

# dpslm.md §5, Figure 4 (wer_vs_bitrate.svg, read off the path geometry, +-0.5 b/s): (K, lambda) -> b/s
DPSLM_FIGURE4 = {
    (100, 0): 192.0, (100, 600): 176.6, (100, 1500): 159.4, (100, 3000): 137.7, (100, 5000): 118.3, (100, 9000): 98.5,
    (200, 0): 243.4, (200, 700): 222.8, (200, 1500): 204.2, (200, 3000): 175.3, (200, 5000): 146.8, (200, 7500): 124.5,
    (500, 0): 319.8, (500, 600): 294.8, (500, 1500): 264.8, (500, 2800): 229.1, (500, 4500): 193.9, (500, 7000): 160.0,
    (1000, 0): 386.4, (1000, 600): 355.6, (1000, 1400): 319.7, (1000, 2500): 279.0, (1000, 3800): 241.0,
    (1000, 6000): 199.8,
}
# dpslm.md §2.7: lambda = 0 figures of the WavLM-codebooks README table (K = 2000 is not in Figure 4)
DPSLM_CODEBOOK_README = {100: 192.0, 200: 243.0, 500: 320.0, 1000: 386.0, 2000: 414.0}
# dpslm.md §5: DP-WFST ablation (dpdp_wfst_abx_ww.svg), K = 500, lambda unlabelled, a different setting
DPWFST_LAMBDA0 = 262.0
DPWFST_LOWEST = {500: 141.7, 10: 147.3, 8: 149.5, 6: 153.6, 4: 162.7, 2: 194.4}  # num_neighbors -> b/s


def dpslm() -> list[Config]:
    sr = 16000   # dpslm.md §1.2: 16 kHz
    hop = 320    # dpslm.md §0, §1.2: WavLM Large layer 11, 50 Hz
    fig = f"{DPSLM} §5 (Figure 4)"

    def units(k: int) -> StreamLayout:
        # dpslm.md §2.3: deduplicated units, durations discarded (ELLA-V regenerates them) -> no durations
        return StreamLayout([StreamSpec("units", (k,), hop, kind="units", durations=False)], sr)

    general = ("rate = R x H, R = units/s after dedup, H = bits/unit, both measured on data; the spec gives "
               "neither R nor H, only the measured rate, and does not state the formula (dpslm.md §2.7)")

    def implied(k: int, pub: float) -> list[str]:
        # dpslm.md §2.7: were H = log2 K (the candidate the spec finds less likely), R = published / log2 K
        return [f"R x H = {fmt(pub)} b/s published; if H = log2({k}): R = {fmt(pub)} / {math.log2(k):.3f} "
                f"= {pub / math.log2(k):.1f} units/s"]

    out = []
    for (k, lam), pub in DPSLM_FIGURE4.items():
        claims = [Claim(pub, f"{fmt(pub)} b/s (Figure 4, measured)", fig, "at_most", tol=0.5)]
        if lam == 0:
            claims.append(Claim(DPSLM_CODEBOOK_README[k], f"{fmt(DPSLM_CODEBOOK_README[k])} b/s (WavLM-codebooks README)",
                                f"{DPSLM} §2.7", "at_most", tol=0.5))
        notes = [general]
        if (k, lam) == (500, 4500):
            notes.append("also the units of the large ULM (60 k h, 200 k steps) (dpslm.md §0)")
        if (k, lam) == (1000, 3800):
            notes.append("figure value approximate (collinear point, read from its marker) (dpslm.md §5)")
        out.append(Config("DP-SLM", f"K={k}, lambda={lam}", units(k), f"{DPSLM} §0, §1.2, §2.3", claims, notes,
                          arithmetic=implied(k, pub)))
    out.append(Config("DP-SLM", "K=2000, lambda=0 (codebook only; no ULM / ELLA-V trained)", units(2000),
                      f"{DPSLM} §2.1, §2.7",
                      [Claim(414.0, "414 b/s (WavLM-codebooks README)", f"{DPSLM} §2.7", "at_most", tol=0.5)],
                      [general,
                         "if H = log2 K, K=2000 would need fewer runs/s than K=1000: implausible at lambda=0; "
                         "the spec reads the figures as R x H (entropy), 'most likely' (dpslm.md §2.7)"],
                      arithmetic=implied(2000, 414.0)))
    abl = f"{DPSLM} §5 (DP-WFST ablation)"
    out.append(Config("DP-SLM (DP-WFST ablation)", "K=500, lambda=0, all num_neighbors", units(500), abl,
                      [Claim(DPWFST_LAMBDA0, f"{fmt(DPWFST_LAMBDA0)} b/s (ablation figure)", abl, "at_most", tol=0.5)],
                      [general, "a different setting from Figure 4 (262 vs 319.8 b/s at lambda=0; features/data not stated)"]))
    for n, pub in DPWFST_LOWEST.items():
        out.append(Config("DP-SLM (DP-WFST ablation)", f"K=500, num_neighbors={n}, largest lambda (unlabelled)",
                          units(500), abl,
                          [Claim(pub, f"{fmt(pub)} b/s (ablation figure)", abl, "at_most", tol=0.5)], [general]))
    # dpslm.md §2.6: the U2S target codec, a fixed-rate stream of its own
    out.append(Config("DP-SLM", "WavTokenizer small_600_24k_4096 (ELLA-V target codec, alone)",
                      StreamLayout([StreamSpec("tokens", (4096,), 600)], 24000),  # §2.6: 24 kHz, hop 600, 4096
                      f"{DPSLM} §2.6",
                      [Claim(480.0, "40 x 12 = 480 b/s (spec)", f"{DPSLM} §2.6")],
                      ["not what DP-SLM transmits: ELLA-V generates these codes from the units (dpslm.md §0)"]))
    return out


def published() -> list[Config]:
    return lmloss() + focalcodec() + siren() + learnable_speech() + dpslm()


# --------------------------------------------------------------------------------------------
# the mini recipe's codecs


def codec_layout(codec) -> tuple[StreamLayout, str]:
    """``codec.layout`` (the streams the codec declares) and where it came from."""
    return codec.layout, "codec.layout"


def header_figure(path: Path) -> float | None:
    """The ``Nominal <number> b/s`` of the file's leading comment block (typed by hand), else its
    first ``<number> b/s``."""
    head = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        head.append(line)
    m = re.search(r"Nominal ([0-9]+(?:\.[0-9]+)?)\s*b/s", "\n".join(head)) or \
        re.search(r"([0-9]+(?:\.[0-9]+)?)\s*b/s", "\n".join(head))
    return float(m.group(1)) if m else None


def mini() -> tuple[list[Config], list[str]]:
    import torch
    from hyperpyyaml import load_hyperpyyaml

    torch.set_num_threads(1)
    out, sources = [], []
    for f in sorted(glob.glob(str(ROOT / "recipes/mini/hparams/codec/*.yaml"))):
        path = Path(f)
        rel = path.relative_to(ROOT).as_posix()
        with open(path, encoding="utf-8") as fh:
            codec = load_hyperpyyaml(fh)["codec"]
        layout, how = codec_layout(codec)
        sources.append(f"{path.stem}: {how}")
        fig = header_figure(path)
        claims = [Claim(fig, f"{fmt(fig)} b/s (yaml header comment)", f"{rel} (header)")] if fig is not None else []
        notes = []
        if abs(codec.bitrate - layout.bitrate) > 1e-6:
            notes.append(f"MISMATCH: Codec.bitrate {codec.bitrate} != layout {layout.bitrate}")
            claims.append(Claim(codec.bitrate, "Codec.bitrate", rel))
        qname = "+".join(type(q).__name__ for q in codec.quantizers().values())
        if "DPDP" in qname:
            notes.append("variable rate after dedup: units/s x log2 K (+ the run lengths where the layout sends them), "
                         "measured by evaluation; the per-frame figure is the rate before dedup")
        if codec.side_info_bits:
            notes.append(f"+ {fmt(codec.side_info_bits)} bits per utterance (side information)")
        out.append(Config("mini recipe", f"{path.stem} ({qname})", layout, rel, claims, notes,
                          group="mini"))
        del codec
    return out, sources


# --------------------------------------------------------------------------------------------
# checks, table, files


def derived_for(cfg: Config, claim: Claim) -> float:
    if claim.against == "nominal":
        return cfg.layout.bitrate
    if claim.against.startswith("stream:"):
        return cfg.layout[claim.against.split(":", 1)[1]].nominal_bitrate(cfg.layout.sample_rate)
    if claim.against.startswith("amortised:"):
        return cfg.layout.amortised_bitrate(float(claim.against.split(":", 1)[1]))
    raise ValueError(claim.against)


def check(cfg: Config, claim: Claim) -> dict:
    """Compare one claim; status: match | within-bound | mismatch-documented | MISMATCH | UNEXPECTED-MATCH."""
    derived = derived_for(cfg, claim)
    close = abs(derived - claim.value) <= claim.tol + 1e-9
    if claim.expect == "equal":
        status = "match" if close else "MISMATCH"
    elif claim.expect == "differs":
        status = "UNEXPECTED-MATCH" if close else "mismatch-documented"
    elif claim.expect == "at_most":
        status = "within-bound" if claim.value <= derived + claim.tol else "MISMATCH"
    else:
        raise ValueError(claim.expect)
    return {"value": claim.value, "label": claim.label, "source": claim.source, "expect": claim.expect,
            "against": claim.against, "tol": claim.tol, "derived": round(derived, 4), "status": status,
            **({"note": claim.note} if claim.note else {})}


def account(cfg: Config) -> dict:
    lay = cfg.layout
    side = lay.side_info_bits
    amort = {f"{fmt(s)}s": lay.amortised_bitrate(s) for s in AMORTISE}
    return {
        "system": cfg.system, "configuration": cfg.name, "group": cfg.group, "source": cfg.source,
        "sample_rate": lay.sample_rate,
        "streams": [{**s.to_dict(), "frame_rate": s.frame_rate(lay.sample_rate),
                     "bits_per_frame": s.bits_per_frame, "nominal_bitrate": s.nominal_bitrate(lay.sample_rate),
                     "arithmetic": s.arithmetic(lay.sample_rate)} for s in lay],
        "nominal_bitrate": lay.bitrate,
        "variable_rate": any(s.kind == "units" for s in lay),
        "side_info_bits": side,
        "bitrate_with_side_info": amort,
        "amortised_arithmetic": {f"{fmt(s)}s": f"{fmt(lay.bitrate)} + {fmt(side)}/{fmt(s)} = {fmt(amort[f'{fmt(s)}s'])} b/s"
                                 for s in AMORTISE} if side else {},
        "arithmetic": cfg.arithmetic,
        "claims": [check(cfg, c) for c in cfg.claims],
        "notes": cfg.notes,
    }


MARK = {"match": "✓", "within-bound": "≤ bound ✓", "mismatch-documented": "✗ (documented)",
        "MISMATCH": "✗ MISMATCH", "UNEXPECTED-MATCH": "✗ UNEXPECTED MATCH"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(rows: list[dict], with_notes: bool = True) -> list[str]:
    lines = ["| system | configuration | streams (arithmetic) | nominal b/s | side info (bits/utt.) | "
             "b/s + side info, 3 s | b/s + side info, 10 s | published figure(s) | source |",
             "|---|---|---|---:|---:|---:|---:|---|---|"]
    notes: list[str] = []
    for r in rows:
        streams = "<br>".join([f"{s['name']}: {s['arithmetic']}" for s in r["streams"]] + r["arithmetic"])
        # a unit stream without run lengths is bounded by its pre-dedup rate; with run lengths it is not
        # (all-singleton runs cost log2 N + the duration code per frame), so no bound is claimed
        with_durations = any(s["kind"] == "units" and s["durations"] for s in r["streams"])
        nominal = (fmt(r["nominal_bitrate"]) + " per frame; sent: variable, + run lengths" if with_durations
                   else ("≤ " if r["variable_rate"] else "") + fmt(r["nominal_bitrate"]))
        if r["side_info_bits"]:
            a3, a10 = r["amortised_arithmetic"]["3s"], r["amortised_arithmetic"]["10s"]
        else:
            a3 = a10 = nominal
        claims = "<br>".join(f"{c['label']} {MARK[c['status']]}" for c in r["claims"]) or "—"
        name = r["configuration"]
        if with_notes and r["notes"]:
            refs = []
            for n in r["notes"]:
                if n not in notes:
                    notes.append(n)
                refs.append(str(notes.index(n) + 1))
            name += " [" + ",".join(refs) + "]"
        lines.append("| " + " | ".join(_cell(x) for x in (
            r["system"], name, streams, nominal, fmt(r["side_info_bits"]), a3, a10, claims, r["source"])) + " |")
    if with_notes and notes:
        lines += [""] + [f"[{i}] {n}  " for i, n in enumerate(notes, 1)]
    return lines


PUBLISHED_HEADING = "### Published configurations"
MINI_HEADING = "### Mini recipe codecs (`recipes/mini/hparams/codec/*.yaml`)"


def markdown(rows: list[dict], mini_sources: list[str] = ()) -> str:
    pub = [r for r in rows if r["group"] == "published"]
    mini_rows = [r for r in rows if r["group"] == "mini"]
    out = ["<!-- generated by benchmarks/bitrate_accounting.py; do not edit -->",
           "## Bitrate accounting",
           "",
           "Nominal b/s = Σ over frame / unit streams of frame rate × Σ log2(codebook size) (FSQ: product of levels "
           "per stage; BSQ: 2^bits). Per-utterance side information (speaker codes) is counted apart and spread "
           "over 3 s and 10 s utterances. Unit streams (DP-SLM) are variable-rate: rate = R × H (R = units/s after "
           "deduplication, H = bits/unit, measured); the table gives the pre-deduplication bound and checks the "
           "published, measured figure against it. ✓ = derived figure equals the published one; ✗ (documented) = "
           "a published claim the spec shows to be wrong. Hyperparameters and figures: `../shared/specs/` "
           "(file and section in the source column).",
           "", PUBLISHED_HEADING, ""] + table(pub)
    if mini_rows:
        by_how: dict[str, list[str]] = {}
        for line in mini_sources:
            stem, how = line.split(": ", 1)
            by_how.setdefault(how, []).append(stem)
        hows = "; ".join(f"{how} ({'all' if len(v) == len(mini_rows) else ', '.join(v)})" for how, v in by_how.items())
        out += ["", MINI_HEADING, "", f"Each codec built with hyperpyyaml; stream layout from {hows}.", ""] \
            + table(mini_rows)
    return "\n".join(out) + "\n"


def published_section(md: str) -> str:
    """The published-configurations table of a generated Markdown file (what the test pins)."""
    start = md.index(PUBLISHED_HEADING)
    end = md.find(MINI_HEADING)
    return md[start:end if end >= 0 else None].strip()


UNPLACED = [  # published figures with no configuration to derive them from
    {"system": "FocalCodec-S", "claim": "'Focal v6 Dual-Stream+GAN' 25 Hz, 550 bps",
     "source": f"{FOCAL} §6 (demo page only)",
     "note": "no code or description; 550 / 25 Hz = 22 bits/frame implied (e.g. two 11-bit streams: a guess)"},
    {"system": "FocalCodec-S", "claim": "'Sem-6bit' 25 Hz, 425 bps", "source": f"{FOCAL} §6 (demo page only)",
     "note": "no code or description; 425 / 25 Hz = 17 bits/frame implied"},
    {"system": "SIREN", "claim": "task log: 'BitNet large' step 9000, ~200 b/s entropy / 356 raw",
     "source": f"{SIREN} §5",
     "note": "356 raw does not match ultra200bps_large.yaml (198.1) but does the legacy ultra200bps layout (355.4): "
             "which config that run used is not stated"},
    {"system": "SIREN", "claim": "HEAD train.py logged 'bps' = stages x 8 x 3 x 50/tc_sem", "source": f"{SIREN} §2.7",
     "note": "a hard-coded formula (8 dims x 3 bits, semantic only), right only for [8]^8; not a configuration"},
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-mini", action="store_true", help="skip building the mini recipe's codecs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for bitrate_accounting.{json,md}")
    args = parser.parse_args()

    configs = published()
    mini_sources: list[str] = []
    if not args.no_mini:
        mini_configs, mini_sources = mini()
        configs += mini_configs
    rows = [account(c) for c in configs]
    md = markdown(rows, mini_sources)
    print(md)

    bad, documented = [], []
    for r in rows:
        for c in r["claims"]:
            line = (f"{r['system']} / {r['configuration']}: {c['label']} = {fmt(c['value'])}, derived "
                    f"{fmt(c['derived'])} ({c['against']}) -- {c['source']}" + (f" -- {c['note']}" if c.get("note") else ""))
            if c["status"] in ("MISMATCH", "UNEXPECTED-MATCH"):
                bad.append(f"{c['status']}: {line}")
            elif c["status"] == "mismatch-documented":
                documented.append(line)
    print("=" * 100)
    print(f"!!! {len(documented)} MISMATCHES between published claims and derived figures (documented in the specs):")
    for line in documented:
        print(f"!!!   {line}")
    print("Published figures with no derivable configuration:")
    for u in UNPLACED:
        print(f"  {u['system']}: {u['claim']} ({u['source']}): {u['note']}")
    if mini_sources:
        print("Mini codecs' layouts:", *mini_sources, sep="\n  ")
    if bad:
        print("#" * 100)
        print(f"### {len(bad)} UNEXPECTED MISMATCHES:")
        for line in bad:
            print(f"###   {line}")
        print("#" * 100)
    print("=" * 100)

    args.out.mkdir(parents=True, exist_ok=True)
    result = {"generated_by": "benchmarks/bitrate_accounting.py", "amortise_seconds": list(AMORTISE),
              "configurations": rows, "published_without_configuration": UNPLACED,
              "mini_layout_source": mini_sources,
              "unexpected_mismatches": bad, "documented_mismatches": documented}
    (args.out / "bitrate_accounting.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                                                      encoding="utf-8")
    (args.out / "bitrate_accounting.md").write_text(md, encoding="utf-8")
    print(f"wrote {args.out / 'bitrate_accounting.json'} and {args.out / 'bitrate_accounting.md'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
