"""evaluate + report on bundled clips: per-utterance problems do not stop the evaluation."""

import numpy as np
import pytest
import soundfile as sf

from speechbrain_codec.dataio import load_audio, write_manifest
from speechbrain_codec.evaluate import evaluate_systems
from speechbrain_codec.report import results_table

from ..conftest import MINI_DATA

IDS = ["sense_and_sensibility_01_austen_64kb-0880", "slt_arctic_a0009", "1089-134686-0001"]


@pytest.fixture
def manifest(tmp_path):
    rows = [{"ID": uid, "duration": 0, "wav": f"{{data_root}}/audio/en/{uid}.flac", "spk_id": "s", "lang": "en",
             "text": ""} for uid in IDS]
    rows[0]["text"] = "he was not an ill disposed young man"
    write_manifest(tmp_path / "m.csv", rows)
    return tmp_path / "m.csv"


def test_bad_outputs_are_reported_per_utterance(manifest, tmp_path):
    system = tmp_path / "sys"
    system.mkdir()
    good = load_audio(MINI_DATA / "audio" / "en" / f"{IDS[0]}.flac", 16000).numpy()
    sf.write(system / f"{IDS[0]}.wav", np.clip(good * 4, -1, 1), 16000)  # clipped but scorable
    sf.write(system / f"{IDS[1]}.wav", np.zeros(16000), 16000)  # silent
    # IDS[2] missing
    results = evaluate_systems(manifest, {"sys": system}, MINI_DATA)
    s = results["systems"]["sys"]
    assert s["summary"]["utterances"] == 1 and s["summary"]["failed"] == 2
    assert "silent" in s["utterances"][IDS[1]]["error"]
    assert "no such audio file" in s["utterances"][IDS[2]]["error"]
    assert 1.0 <= s["utterances"][IDS[0]]["pesq"] < 4.5
    # WER only where a transcript exists; dWER against the original's transcript everywhere
    assert "wer" in s["utterances"][IDS[0]]
    assert "no transcript" in results["systems"]["original"]["utterances"][IDS[1]]["note"]
    original = results["systems"]["original"]["summary"]
    assert original["pesq_wb"] == pytest.approx(4.64, abs=0.01) and original["dwer"] == 0.0
    table = results_table(results)
    assert table.splitlines()[2].startswith("| original |") and "| sys |" in table
