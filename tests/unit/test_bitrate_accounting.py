"""The bitrate-accounting table (benchmarks/bitrate_accounting.py) against the specs' figures.

Pins the key published bit rates so the table cannot drift silently, checks that every claim
the specs document as wrong is still reported as a mismatch (and nothing else is), and that the
committed Markdown's published table is what the script generates.
"""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("bitrate_accounting", ROOT / "benchmarks" / "bitrate_accounting.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


ba = _load()
CONFIGS = ba.published()


def find(system: str, name_start: str):
    hits = [c for c in CONFIGS if c.system == system and c.name.startswith(name_start)]
    assert len(hits) == 1, (system, name_start, [c.name for c in hits])
    return hits[0].layout


@pytest.mark.parametrize("name, bitrate", [("2_5", 187.5), ("2_6", 212.5)])
def test_lmloss(name, bitrate):
    lay = find("LM-loss codec", name)
    assert lay.bitrate == pytest.approx(bitrate)
    assert lay.side_info_bits == 0
    assert lay["content"].frame_rate(lay.sample_rate) == 25.0
    assert lay["f0"].frame_rate(lay.sample_rate) == 12.5


@pytest.mark.parametrize("system, name, bitrate", [
    ("FocalCodec-S", "focalcodec_50hz_2k_causal, stage 1", 550.0),
    ("FocalCodec-S", "focalcodec_50hz_2k_causal, stage 2", 275.0),
    ("FocalCodec-S", "focalcodec_50hz_2k_causal, stage 3", 137.5),
    ("FocalCodec", "non-causal 50 Hz", 650.0),
    ("FocalCodec", "non-causal 25 Hz", 325.0),
    ("FocalCodec", "non-causal 12.5 Hz", 162.5),
])
def test_focalcodec(system, name, bitrate):
    assert find(system, name).bitrate == pytest.approx(bitrate)


@pytest.mark.parametrize("name, nominal, side, at3, at10", [
    ("README hyperparameters", 124.57, 0, 124.6, 124.6),
    ("spec's guess", 62.29, 64, 83.6, 68.7),
    ("v0.1.0 default.yaml", 186.86, 64, 208.2, 193.3),
    ("v0.1.0 improved", 950.98, 64, 972.3, 957.4),
    ("sub100bps.yaml", 2250.0, 64, 2271.3, 2256.4),
    ("legacy ultra200bps.yaml", 355.43, 24, 363.4, 357.8),
    ("ultra200bps_large.yaml", 198.12, 64, 219.5, 204.5),
    ("ultra200bps_tiny_adapt.yaml", 870.72, 64, 892.1, 877.1),
    ("legacy ultra200bps_flow.yaml", 1741.45, 64, 1762.8, 1747.8),
    ("V8 ultra58bps_16k.yaml", 109.91, 12, 113.9, 111.1),
    ("V8 ultra200bps_16k.yaml", 249.25, 12, 253.2, 250.4),
    ("V8 ultra250bps_16k.yaml", 315.34, 12, 319.3, 316.5),
])
def test_siren(name, nominal, side, at3, at10):
    lay = find("SIREN", name)
    assert lay.bitrate == pytest.approx(nominal, abs=0.005)
    assert lay.side_info_bits == pytest.approx(side)
    assert lay.amortised_bitrate(3.0) == pytest.approx(at3)
    assert lay.amortised_bitrate(10.0) == pytest.approx(at10)


def test_learnable_speech():
    lay = find("Learnable-Speech", "S3Tokenizer")
    assert lay.bitrate == pytest.approx(25 * math.log2(6561))
    assert round(lay.bitrate, 1) == 317.0


def test_dpslm_pairs_and_bounds():
    pairs = [c for c in CONFIGS if c.system == "DP-SLM" and c.name.startswith("K=") and "2000" not in c.name]
    assert len(pairs) == 24  # dpslm.md §0: the 24 trained (K, lambda) pairs
    for c in pairs:
        k = int(c.name.split(",")[0][2:])
        assert c.layout.bitrate == pytest.approx(50 * math.log2(k))  # pre-dedup bound
        assert c.layout["units"].kind == "units" and not c.layout["units"].durations
        (fig,) = [x for x in c.claims if "Figure 4" in x.label]
        assert fig.value < c.layout.bitrate
    assert find("DP-SLM", "WavTokenizer").bitrate == pytest.approx(480.0)


def test_claims_checked_as_documented():
    rows = [ba.account(c) for c in CONFIGS]
    statuses = [(r["system"], r["configuration"], c["label"], c["status"]) for r in rows for c in r["claims"]]
    assert not [s for s in statuses if s[3] in ("MISMATCH", "UNEXPECTED-MATCH")]
    documented = [s for s in statuses if s[3] == "mismatch-documented"]
    assert len(documented) == 12
    assert ("FocalCodec-S", "focalcodec_50hz_2k_causal, stage 3, Exp E/K (12.5 Hz)",
            "eval_stage3.py prints '12 bits / 150 bps'", "mismatch-documented") in statuses
    assert sum("68 bps" in s[2] for s in documented) == 2


def test_committed_markdown_matches():
    md = (ROOT / "benchmarks" / "results" / "bitrate_accounting.md").read_text(encoding="utf-8")
    fresh = ba.markdown([ba.account(c) for c in CONFIGS])
    assert ba.published_section(md) == ba.published_section(fresh), \
        "benchmarks/results/bitrate_accounting.md is stale: rerun python benchmarks/bitrate_accounting.py"


def test_mini_codecs_match_their_headers():
    configs, _ = ba.mini()
    assert len(configs) == len(list((ROOT / "recipes/mini/hparams/codec").glob("*.yaml")))
    for c in configs:
        assert c.claims, c.name
        for claim in c.claims:
            assert ba.check(c, claim)["status"] == "match", (c.name, claim)


def test_readme_holds_the_generated_table():
    """The README's bitrate-accounting block is the generated file's, verbatim."""
    md = (ROOT / "benchmarks/results/bitrate_accounting.md").read_text(encoding="utf-8")
    block = md[md.index("### Published configurations"):md.index("### Mini recipe codecs")].strip()
    block = block.replace("### Published configurations\n\n", "", 1)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- bitrate-accounting:start -->\n", "\n<!-- bitrate-accounting:end -->"
    assert readme[readme.index(start) + len(start):readme.index(end)] == block
