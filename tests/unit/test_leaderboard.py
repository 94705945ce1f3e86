"""The cross-recipe leaderboard (deliverable 5): sections per protocol, bitrate bands, Pareto
fronts, published points checked against the specs they cite."""

import json
import re
import subprocess
import sys

import pytest

from speechbrain_codec import leaderboard
from speechbrain_codec.leaderboard import band, collect, leaderboard_table, pareto_front
from speechbrain_codec.published_points import POINTS, points

from ..conftest import ROOT


def test_bands_at_their_edges():
    assert [band(r) for r in (1.0, 300.0, 300.1, 700.0, 700.1, 1000.0, 1000.1)] == [
        "<= 0.3 kb/s", "<= 0.3 kb/s", "0.3-0.7 kb/s", "0.3-0.7 kb/s", "0.7-1.0 kb/s", "0.7-1.0 kb/s", "> 1.0 kb/s"]
    assert band(None) == "–"


def test_pareto_front_edge_cases():
    assert pareto_front([]) == [] and pareto_front([(100, 0.5)]) == [0]
    # equal bitrate: the better one only; a tie in the metric at a higher rate is dominated
    assert pareto_front([(100, 0.5), (100, 0.4), (200, 0.4), (300, 0.1)]) == [1, 3]
    # higher is better (quality)
    assert pareto_front([(100, 2.0), (200, 3.0), (300, 2.5)], lower_is_better=False) == [0, 1]


def test_published_points_match_the_specs_they_cite(shared_dir):
    specs = {p.name: p.read_text(encoding="utf-8") for p in (shared_dir / "specs").glob("*.md")}
    notes = (shared_dir / "EVALUATION_NOTES.md").read_text(encoding="utf-8")
    for p in POINTS:
        assert re.search(r"(\w+\.md §\d|EVALUATION_NOTES\.md)", p["source"]), p
        assert p["protocol"] and p["test_set"] and p["bitrate"] > 0
        text = notes if p["source"].startswith("EVALUATION_NOTES") else specs[p["source"].split(" ")[0]]
        for value in p["metrics"].values():
            assert re.search(rf"(?<![\d.]){re.escape(f'{value:g}')}0*(?![\d])", text), (p["system"], value)
    # FocalCodec-S K (AISHELL-1): 137.5 b/s, dCER 16.03 %, the spec's row
    k = next(p for p in points() if p["system"] == "FocalCodec-S K" and p["test_set"].startswith("AISHELL"))
    assert k["bitrate"] == 137.5 and k["metrics"]["dcer_utt"] == pytest.approx(0.1603) and k["kind"] == "published"
    assert len([p for p in POINTS if p["protocol"] == "dpslm"]) == 24  # every point of DP-SLM's Figure 4


def _results(path, preset, systems, test_set):
    proto = {"asr": "pocketsphinx", "asrs": ["pocketsphinx"]}
    if preset:
        proto["preset"] = {"name": preset, "title": f"{preset} title", "modified": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"protocol": proto, "test_set": test_set, "manifest": "m.csv", "systems": {
        name: {"summary": summary, "utterances": {}} for name, summary in systems.items()}}))
    return path


@pytest.fixture
def files(tmp_path):
    a = _results(tmp_path / "recipes" / "Bilingual" / "focalcodec_s" / "exp" / "results" / "results.json",
                 "focalcodec_s", {
                     "original": {"dwer_utt": None, "stoi": 1.0},
                     "K": {"nominal_bitrate": 137.5, "dcer_utt": 0.2, "dwer_utt": 0.12, "stoi": 0.4,
                           "ci95": {"stoi": [0.35, 0.45]}},
                     "J": {"nominal_bitrate": 275.0, "dcer_utt": 0.05, "dwer_utt": 0.04, "stoi": 0.6}},
                 "zh en test lists, first 2000 each")
    b = _results(tmp_path / "recipes" / "mini" / "exp" / "mini" / "results" / "results.json", None, {
        "original": {"wer": 0.2, "dwer": 0.0, "stoi": 1.0},
        "mini-fsq": {"nominal_bitrate": 498.3, "payload_bitrate": 510.0, "dwer": 0.7, "stoi": 0.85, "failed": 1,
                     "utterances": 6},
        "codec2_700C": {"payload_bitrate": 798.0, "dwer": 0.9, "stoi": 0.72}}, "data/test.csv (6 utterances)")
    return a, b


def test_rows_are_grouped_by_protocol_and_say_their_test_set(files):
    rows = collect([str(f) for f in files])
    ours = {r["system"]: r for r in rows if r["file"]}
    assert ours["K"]["protocol"] == "focalcodec_s" and ours["K"]["source"] == "Bilingual/focalcodec_s"
    assert ours["mini-fsq"]["protocol"] == "custom (pocketsphinx)" and ours["mini-fsq"]["bitrate"] == 510.0
    assert ours["codec2_700C"]["kind"] == "baseline" and ours["original"]["kind"] == "original"
    table = leaderboard_table(rows)
    sections = table.split("\n## ")[1:]
    fcs = next(s for s in sections if s.startswith("focalcodec_s\n"))
    custom = next(s for s in sections if s.startswith("custom (pocketsphinx)"))
    # ours beside the published points of the same protocol, with the test set on every row
    assert "| K | ours | Bilingual/focalcodec_s | zh en test lists, first 2000 each | <= 0.3 kb/s | 137.5 |" in fcs
    assert "| FocalCodec-S K | published | focalcodec_s.md §6 (AISHELL-1 table) | AISHELL-1 test (first 2000) |" in fcs
    assert "0.400 (0.350–0.450)" in fcs
    # the custom pocketsphinx numbers never share a column with another protocol's
    assert "FocalCodec-S" not in custom and "| mini-fsq (1 failed: worst values) | ours | mini |" in custom
    assert "| 0.3-0.7 kb/s | 510.0 |" in custom and "0.7-1.0 kb/s" in custom
    dpslm = next(s for s in sections if s.startswith("dpslm\n"))
    assert "median WER %" in dpslm.splitlines()[4] and "K=100" in dpslm
    assert len(collect([str(files[0])], published=False)) == 3


def test_main_writes_table_json_and_pareto_plots(files, tmp_path, capsys):
    out = tmp_path / "lb"
    assert leaderboard.main([str(f) for f in files] + ["--out", str(out / "lb.md"), "--plots", str(out),
                                                       "--json", str(out / "lb.json")]) == 0
    assert (out / "lb.md").read_text().startswith("# Leaderboard")
    for name in ("leaderboard_intelligibility.png", "leaderboard_quality.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads((out / "lb.json").read_text())
    assert {r["protocol"] for r in rows} >= {"focalcodec_s", "custom (pocketsphinx)", "dpslm", "offline"}
    # a folder is searched for results*.json
    capsys.readouterr()
    assert leaderboard.main([str(tmp_path / "recipes"), "--no-published"]) == 0
    assert "FocalCodec-S" not in capsys.readouterr().out


def test_module_entry_point_and_one_line_errors(files, tmp_path):
    ok = subprocess.run([sys.executable, "-m", "speechbrain_codec.leaderboard", str(files[1]), "--no-published"],
                        capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "| mini-fsq (1 failed: worst values) |" in ok.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    for args, message in (([str(tmp_path / "nope.json")], "no such results file"),
                          ([str(bad)], "not a results.json")):
        proc = subprocess.run([sys.executable, "-m", "speechbrain_codec.leaderboard", *args], capture_output=True,
                              text=True, cwd=ROOT)
        assert proc.returncode == 1 and message in proc.stderr and proc.stderr.count("\n") == 1
