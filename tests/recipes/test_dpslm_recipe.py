"""recipes/LibriSpeech/dpslm/run.sh end to end on the debug configuration: a LibriSpeech layout
built from ../shared/data English clips (test-clean: the two shortest transcribed
LibriSpeech clips; dev-clean: one; train-clean-100: three clips cut to 3 s), tiny random WavLM /
WavTokenizer / CTC, a shrunk (K, lambda) grid, every stage; then the outputs are checked against
each other: the plot and the table come from results.json, the .sbc files hold the deduplicated
units at log2 K bits each (file rate = R log2 K + the header), and a second run skips every
stage."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ..conftest import ROOT

RUN = ROOT / "recipes" / "LibriSpeech" / "dpslm" / "run.sh"
TEST_IDS = ["1089-134691-0000", "1089-134686-0001"]  # 2.1 s and 3.3 s, with transcripts
DEV_IDS = ["61-70968-0000"]
TRAIN_IDS = ["103-1240-0000", "1034-121119-0000", "1040-133433-0000"]
TRAIN_SECONDS = 3.0


def _rows(shared_dir: Path, name: str) -> dict[str, dict]:
    folder = shared_dir / "data" / "en" / name
    with open(folder / "manifest.tsv", newline="", encoding="utf-8") as f:
        return {r["utt_id"]: dict(r, path=str(folder / r["path"])) for r in csv.DictReader(f, delimiter="\t")}


def build_corpus(shared_dir: Path, root: Path) -> Path:
    """``root/LibriSpeech/<split>/<spk>/<chapter>/`` (.flac + .trans.txt)."""
    misc, train = _rows(shared_dir, "librispeech_clean_misc"), _rows(shared_dir, "librispeech_train_clean_100")
    chosen = [(u, "test-clean", misc[u], None) for u in TEST_IDS] + [(u, "dev-clean", misc[u], None) for u in DEV_IDS]
    chosen += [(u, "train-clean-100", dict(train[u], text=f"TRANSCRIPT OF {u.replace('-', ' ')}"), TRAIN_SECONDS)
               for u in TRAIN_IDS]
    trans: dict[Path, list[str]] = {}
    for utt, split, row, seconds in chosen:
        spk, chap, _ = utt.split("-")
        folder = root / "LibriSpeech" / split / spk / chap
        folder.mkdir(parents=True, exist_ok=True)
        sig, sr = sf.read(row["path"], dtype="int16")
        if seconds:
            sig = sig[: int(seconds * sr)]
        sf.write(folder / f"{utt}.flac", sig, sr)
        trans.setdefault(folder / f"{spk}-{chap}.trans.txt", []).append(f"{utt} {row['text']}")
    for path, lines in trans.items():
        path.write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    return root


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(RUN), *args], capture_output=True, text=True, env=env, timeout=1800)


def test_every_stage_runs_and_outputs_agree(shared_dir, tmp_path):
    corpus = build_corpus(shared_dir, tmp_path / "corpus")
    exp = tmp_path / "exp"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    args = ["--corpus", str(corpus), "--exp", str(exp), "--debug", "true"]
    first = run(args, env)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    for n in range(1, 11):
        assert f"stage {n}:" in first.stdout, n
    pairs = ["K8_l0", "K8_l4", "K16_l0", "K16_l4"]

    # results.json: one system per pair, with the facts of the resynthesis stage and the WERs
    results = json.loads((exp / "results" / "results.json").read_text())
    assert set(pairs) <= set(results["systems"]) and "original" in results["systems"]
    for name in pairs:
        s = results["systems"][name]["summary"]
        k, lam = int(name[1:].split("_")[0]), float(name.split("_l")[1])
        assert (s["K"], s["lambda"]) == (k, lam)
        for key in ("wer", "wer_median", "dwer"):
            assert 0.0 <= s[key]
        # bitrate = R H <= R log2 K (the bound), both from the units sent
        assert 0 < s["bitrate"] <= s["bitrate_bound"] + 1e-9
        assert s["bitrate_bound"] == pytest.approx(s["units_per_second"] * math.log2(k))
        assert s["bitrate"] == pytest.approx(s["units_per_second"] * s["entropy_bits"])

    # a larger lambda sends fewer units (same K)
    sysm = {n: results["systems"][n]["summary"] for n in pairs}
    assert sysm["K8_l4"]["units_per_second"] < sysm["K8_l0"]["units_per_second"]
    assert sysm["K16_l4"]["units_per_second"] < sysm["K16_l0"]["units_per_second"]

    # the .sbc of a DPDP codec: the deduplicated units only, log2 K bits each, plus the header
    from speechbrain_codec.bitstream import read_sbc
    from speechbrain_codec.quantizers.dpdp import dedup

    for name in pairs:
        k = int(name[1:].split("_")[0])
        folder = exp / "pairs" / name / "bitstreams"
        files = sorted(folder.glob("*.sbc"))
        assert len(files) == 2
        total_bytes = total_seconds = total_units = 0.0
        for f in files:
            bs = read_sbc(f)
            units = bs.token_dict()["units"][:, 0]
            assert len(dedup(units)[0]) == len(units)  # no repeated neighbours: deduplicated
            total_bytes += f.stat().st_size
            total_seconds += bs.duration
            total_units += len(units)
        r = total_units / total_seconds
        header = json.loads((folder / "bitrate.json").read_text())["header_bitrate"]
        file_rate = 8 * total_bytes / total_seconds
        # payload = ceil(U log2 K / 8) bytes per file (one byte of slack per file and block)
        assert r * math.log2(k) <= file_rate - header + 1e-6 <= r * math.log2(k) + 8 * 2 * len(files) / total_seconds
        s = sysm[name]
        assert s["units_per_second"] == pytest.approx(r)
        assert s["sbc_file_bitrate"] == pytest.approx(file_rate)
        # the entropy-coded payload is close to the ideal R H (an order-0 model fitted on the training units)
        assert s["sbc_entropy_payload_bitrate"] > 0

    # the plot and the table come from results.json
    table = (exp / "results" / "wer_vs_bitrate.md").read_text()
    drawn = json.loads((exp / "results" / "wer_vs_bitrate.json").read_text())
    assert Path(drawn["results"]) == (exp / "results" / "results.json").resolve()
    assert len(drawn["published"]) == 24
    for row in drawn["ours"]:
        s = sysm[row["system"]]
        assert row["bitrate"] == s["bitrate"] and row["wer_median"] == pytest.approx(100 * s["wer_median"])
        assert f"| {row['K']} | {row['lambda']:g} | {s['units_per_second']:.2f} |" in table
        assert f"{s['bitrate']:.1f} | {s['bitrate_bound']:.1f} |" in table
    assert "| 500 | 4500 | 193.9 | 6.67 |" in table  # a published point
    png = (exp / "results" / "wer_vs_bitrate.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
    # resynthesis: 24 kHz audio
    info = sf.info(exp / "pairs" / "K8_l4" / "decoded" / f"{TEST_IDS[0]}.wav")
    assert info.samplerate == 24000 and info.frames > 0
    ulm = json.loads((exp / "pairs" / "K8_l4" / "ulm_scores.json").read_text())
    assert set(ulm["log_likelihood"]) == set(TEST_IDS) and all(v < 0 for v in ulm["log_likelihood"].values())

    second = run(args, env)
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.stdout.count("already done") >= 9, second.stdout


def test_hparams_keys_are_used_and_debug_overrides_exist():
    import yaml

    folder = RUN.parent / "hparams"
    full, debug = (yaml.safe_load((folder / f).read_text()) for f in ("dpslm.yaml", "debug.yaml"))
    for section in ("ulm", "ellav"):
        assert set(debug[section]) <= set(full[section]), section
    source = (ROOT / "speechbrain_codec" / "bin" / "dpslm.py").read_text()
    for section in ("ulm", "ellav"):
        for key in full[section]:
            assert f'"{key}"' in source, f"{section}.{key} is not read by speechbrain_codec/bin/dpslm.py"
    # the published sizes of the unit LM (§2.4) and the 24 pairs of the figure
    assert (full["ulm"]["dim"], full["ulm"]["num_layers"], full["ulm"]["dropout"]) == (1024, 12, 0.15)
    published = json.loads((RUN.parent / "published.json").read_text())["points"]
    from speechbrain_codec.bin.dpslm import parse_pairs

    default = [ln for ln in RUN.read_text().splitlines() if ln.startswith("pairs=")][0].split('"')[1]
    assert parse_pairs(default) == [(p["K"], p["lambda"]) for p in published]


def test_rates_on_a_concrete_sequence():
    from speechbrain_codec.bin.dpslm import pair_name, unit_rates

    # 10 frames (0.2 s) -> runs [3, 1, 3, 2] -> 4 units: R = 20/s, H(3: 1/2, 1: 1/4, 2: 1/4) = 1.5 bits
    r = unit_rates({"a": np.array([3, 3, 1, 1, 1, 3, 2, 2, 2, 2])}, ["a"], k=4)
    assert r["units"] == 4 and r["units_per_second"] == pytest.approx(20.0)
    assert r["entropy_bits"] == pytest.approx(1.5) and r["bitrate"] == pytest.approx(30.0)
    assert r["bitrate_bound"] == pytest.approx(40.0)  # R log2 K
    assert pair_name(500, 4500.0) == "K500_l4500" and pair_name(8, 0.5) == "K8_l0.5"
