"""Protocol presets (deliverable 2), an independent ASR beside the training one (3), the speaker
and MOS backends named in the header (4), and the mini recipe's report under its preset."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_codec import cli
from speechbrain_codec.dataio import load_audio, read_manifest, write_manifest
from speechbrain_codec.evaluate import evaluate_systems
from speechbrain_codec.metrics.asr import NORMALISERS
from speechbrain_codec.metrics.quality import UTMOS, export_utmos
from speechbrain_codec.protocols import PROTOCOLS, get_protocol, model_sources, resolve_model
from speechbrain_codec.report import FORMATS, merge_results, results_table
from speechbrain_codec.utils import CodecError

from ..conftest import MINI_DATA, ROOT
from ..tiny_models import tiny_ctc, tiny_wavlm_sv, tiny_whisper

EN = ["sense_and_sensibility_01_austen_64kb-0880", "slt_arctic_a0009"]


class ToyMOS(torch.nn.Module):
    """Stands in for UTMOS22 strong: (wav [1, T], sr) -> a score in (1, 5) that depends on the audio."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(2, 1)

    def forward(self, wav: torch.Tensor, sr: int) -> torch.Tensor:
        feats = torch.stack([wav.abs().mean(), wav.std()]).reshape(1, 2) * 10
        return 1.0 + 4.0 * torch.sigmoid(self.lin(feats)).reshape(1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("proto")
    rows = [{"ID": u, "duration": 0, "wav": f"{{data_root}}/audio/en/{u}.flac", "spk_id": "s", "lang": "en",
             "text": "he was not an ill disposed young man" if i == 0 else "author of the danger trail"}
            for i, u in enumerate(EN)]
    write_manifest(root / "m.csv", rows)
    (root / "noisy").mkdir()
    rng = np.random.default_rng(0)
    for u in EN:
        x = load_audio(MINI_DATA / "audio" / "en" / f"{u}.flac", 16000).numpy()
        sf.write(root / "noisy" / f"{u}.wav", x + 0.01 * rng.standard_normal(x.shape), 16000)
    models = root / "models"
    tiny_whisper(models / "whisper-large-v3")
    tiny_wavlm_sv(models / "wavlm-base-sv")
    tiny_ctc(models / "ctc")
    export_utmos(ToyMOS(), models / "utmos22_strong.onnx")
    return root


def test_every_preset_names_its_models_normaliser_and_layout():
    assert set(PROTOCOLS) == {"focalcodec", "llasa", "focalcodec_s", "lmloss", "dpslm", "offline"}
    for p in PROTOCOLS.values():
        assert p.asrs and p.decoding and p.source and p.test_set, p.name
        assert p.normaliser in NORMALISERS and p.report_format in FORMATS, p.name
        assert ("spk" in p.metrics) == (p.spk is not None), p.name
        assert ("utmos" not in p.metrics) or p.utmos, p.name
        independent = [a for a in p.asrs if a not in p.training_asrs]
        assert independent, f"{p.name}: no ASR it does not train against"
    fc = get_protocol("focalcodec")
    assert fc.asrs == ("whisper:openai/whisper-large-v3",) and fc.spk == "wavlm-sv:microsoft/wavlm-base-sv"
    llasa = get_protocol("llasa")
    assert llasa.asrs == ("ctc:facebook/hubert-large-ls960-ft",) and llasa.spk.startswith("wavlm-ecapa:")
    assert get_protocol("lmloss").asrs[1] == "ctc:facebook/wav2vec2-base-960h"  # lmloss.md §5.2
    assert get_protocol("focalcodec_s").training_asrs == ("whisper:openai/whisper-small",)  # §5.3, §6.1 item 12
    assert get_protocol("dpslm").intelligibility == ("wer_median",)  # dpslm.md §5: the median
    assert ("wavlm_large_finetune.pth", "speaker model") in model_sources(llasa)
    with pytest.raises(CodecError, match="unknown --protocol 'nope'"):
        get_protocol("nope")


def test_models_resolve_to_local_paths_or_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "whisper-large-v3").mkdir()
    (tmp_path / "utmos22_strong.onnx").write_bytes(b"x")
    got = resolve_model("openai/whisper-large-v3", "ASR", "focalcodec", {}, str(tmp_path))
    assert got == str(tmp_path / "whisper-large-v3")
    assert resolve_model("utmos22_strong", "MOS", "focalcodec", {}, str(tmp_path)) == str(tmp_path / "utmos22_strong.onnx")
    assert resolve_model("openai/whisper-large-v3", "ASR", "x", {"whisper-large-v3": str(tmp_path)}, None) == str(tmp_path)
    with pytest.raises(CodecError) as err:
        resolve_model("openai/whisper-large-v3", "ASR", "focalcodec", {}, None)
    msg = str(err.value)
    assert "\n" not in msg and "not available offline" in msg and "--model openai/whisper-large-v3=" in msg
    with pytest.raises(CodecError, match="no such file or folder"):
        resolve_model("openai/whisper-large-v3", "ASR", "focalcodec", {"openai/whisper-large-v3": str(tmp_path / "x")}, None)


def test_a_missing_model_is_one_line_on_the_command_line(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["evaluate", "--manifest", str(data / "m.csv"), "--data-root", str(MINI_DATA), "--protocol", "focalcodec",
            "--out", str(tmp_path / "r.json")]
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: openai/whisper-large-v3 (the focalcodec protocol's ASR) is not available offline")
    assert "\n" not in err and not (tmp_path / "r.json").exists()


def test_focalcodec_preset_with_local_models_end_to_end(data, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "r.json"
    assert cli.main(["evaluate", "--manifest", str(data / "m.csv"), "--data-root", str(MINI_DATA),
                     "--system", f"noisy={data / 'noisy'}", "--protocol", "focalcodec", "--model-dir",
                     str(data / "models"), "--workers", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    proto = res["protocol"]
    assert proto["preset"]["name"] == "focalcodec" and proto["preset"]["modified"] == {}
    assert proto["metrics"] == ["utmos", "spk"] and proto["asr_labels"] == ["whisper-large-v3"]
    assert proto["speaker_model"].startswith("WavLM x-vector") and "utmos22_strong.onnx" in proto["mos_predictor"]
    s = res["systems"]["noisy"]["summary"]
    assert 1.0 < s["utmos"] < 5.0 and -1.0 <= s["spk_sim"] <= 1.0 and s["dwer"] is not None
    assert res["systems"]["original"]["summary"]["spk_sim"] == pytest.approx(1.0, abs=1e-4)
    table = results_table(res, "focalcodec")
    assert table.startswith("| System | Bitrate (b/s) | UTMOS | dWER % [whisper-large-v3] | Sim [WavLM x-vector] |")
    assert "Protocol: focalcodec (FocalCodec" in table
    # an option the preset does not name is recorded as a modification
    out2 = tmp_path / "r2.json"
    assert cli.main(["evaluate", "--manifest", str(data / "m.csv"), "--data-root", str(MINI_DATA),
                     "--protocol", "lmloss", "--asr", "pocketsphinx", "--metrics", "stoi", "--workers", "1",
                     "--out", str(out2)]) == 0
    preset = json.loads(out2.read_text())["protocol"]["preset"]
    assert preset["modified"] == {"metrics": ["stoi"], "asrs": ["pocketsphinx"]}
    assert preset["normaliser"] == "whisper+jiwer"
    assert "MODIFIED: metrics=['stoi']" in results_table(json.loads(out2.read_text()))


def test_an_independent_asr_is_scored_beside_the_training_one(data):
    ctc = str(data / "models" / "ctc")
    res = evaluate_systems(data / "m.csv", {"noisy": data / "noisy"}, MINI_DATA, metrics=("stoi",),
                           asr=["pocketsphinx", f"ctc:{ctc}"], workers=1, training_asrs=(f"ctc:{ctc}",))
    proto = res["protocol"]
    assert proto["asr_labels"] == ["pocketsphinx", "ctc"] and proto["independent_asrs"] == ["pocketsphinx"]
    by = res["systems"]["noisy"]["summary"]["by_asr"]
    assert by["ctc"]["trained_against"] and not by["pocketsphinx"]["trained_against"]
    assert by["pocketsphinx"]["wer"] == res["systems"]["noisy"]["summary"]["wer"]  # the primary's columns
    assert by["ctc"]["wer"] is not None and by["ctc"]["dwer"] is not None
    assert res["systems"]["noisy"]["utterances"][EN[0]]["by_asr"]["ctc"]["hyp"] is not None
    table = results_table(res)
    assert "WER % [pocketsphinx] | WER % [ctc†] |" in table and "† the ASR the systems trained against" in table
    # only the training ASR: a warning in the protocol
    only = evaluate_systems(data / "m.csv", {}, MINI_DATA, metrics=(), asr=f"ctc:{ctc}", workers=1,
                            training_asrs=(f"ctc:{ctc}",))
    assert "independent one" in only["protocol"]["warning"]
    # the recipes' way: one results file per ASR, merged by the report
    a = evaluate_systems(data / "m.csv", {"noisy": data / "noisy"}, MINI_DATA, metrics=("stoi",),
                         asr="pocketsphinx", workers=1)
    b = evaluate_systems(data / "m.csv", {"noisy": data / "noisy"}, MINI_DATA, metrics=("stoi",),
                         asr=f"ctc:{ctc}", workers=1, training_asrs=(f"ctc:{ctc}",))
    merged = merge_results([a, b])
    by = merged["systems"]["noisy"]["summary"]["by_asr"]
    assert by["pocketsphinx"]["wer"] == a["systems"]["noisy"]["summary"]["wer"]
    assert by["ctc"]["wer"] == b["systems"]["noisy"]["summary"]["wer"] and by["ctc"]["trained_against"]
    assert "| WER % [pocketsphinx] | WER % [ctc†] |" in results_table(merged)
    with pytest.raises(CodecError, match="different systems"):
        merge_results([a, evaluate_systems(data / "m.csv", {}, MINI_DATA, metrics=(), asr="none", workers=1)])


def test_mini_recipe_reports_under_its_preset_with_intervals(tmp_path):
    """recipes/mini/run.sh stages 6-7 on prepared manifests and a 'decoded' folder of noisy
    copies: the offline preset is recorded and the report shows it and the intervals."""
    exp = tmp_path / "exp"
    subprocess.run([sys.executable, str(ROOT / "recipes" / "mini" / "mini_prepare.py"), "--data_folder",
                    str(MINI_DATA), "--save_folder", str(exp / "data")], check=True, capture_output=True)
    (exp / "decoded").mkdir()
    rng = np.random.default_rng(0)
    for uid, row in read_manifest(exp / "data" / "test.csv", MINI_DATA).items():
        x = load_audio(row["wav"], 16000).numpy()
        sf.write(exp / "decoded" / f"{uid}.wav", x + 0.01 * rng.standard_normal(x.shape), 16000)
    (exp / "decoded" / ".done").write_text("x")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", str(ROOT / "recipes" / "mini" / "run.sh"), "--exp", str(exp), "--stage", "6",
                           "--stop_stage", "7", "--baselines", "", "--metrics", "stoi"],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((exp / "results" / "results.json").read_text())
    assert res["protocol"]["preset"]["name"] == "offline" and res["protocol"]["asrs"] == ["pocketsphinx"]
    assert res["protocol"]["preset"]["modified"] == {"metrics": ["stoi"]}
    md = (exp / "results" / "results.md").read_text()
    s = res["systems"]["mini-fsq"]["summary"]
    lo, hi = s["ci95"]["stoi"]
    assert f"| mini-fsq | {s['stoi']:.3f} ({lo:.3f}–{hi:.3f}) |" in md
    assert "Protocol: offline" in md and "WER % [pocketsphinx]" in md and "Paired tests" in md


# ------------------------------------------------------------------ speaker and MOS backends


def test_wavlm_sv_backend_and_its_header_name(data, tmp_path):
    from speechbrain_codec.metrics.speaker import SpeakerSimilarity, speaker_backend_name

    sv = str(data / "models" / "wavlm-base-sv")
    clip = load_audio(MINI_DATA / "audio" / "en" / f"{EN[0]}.flac", 16000).numpy()
    other = load_audio(MINI_DATA / "audio" / "en" / f"{EN[1]}.flac", 16000).numpy()
    for spec in (f"wavlm-sv:{sv}", sv):  # with the prefix, and a bare folder as before
        sim = SpeakerSimilarity(spec)
        assert sim(clip, clip) == pytest.approx(1.0, abs=1e-3)
        assert -1.0 <= sim(clip, other) <= 1.0
    assert speaker_backend_name(f"wavlm-sv:{sv}") == f"WavLM x-vector ({sv})"
    assert speaker_backend_name("resemblyzer").startswith("resemblyzer")


def _tiny_ecapa_checkpoint(folder: Path) -> tuple[Path, Path, torch.nn.Module]:
    """A WavLM-large-shaped tiny WavLM (stable layer norm) + ECAPA head, saved as UniSpeech saves
    wavlm_large_finetune.pth: {'model': head keys + feature_extract.model.<fairseq names>}."""
    from transformers import WavLMConfig, WavLMModel

    from speechbrain_codec.metrics.speaker import EcapaTDNN, WavLMEcapa, unilm_to_hf_wavlm

    cfg = WavLMConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                      conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                      num_conv_pos_embedding_groups=2, num_buckets=32, max_bucket_distance=64,
                      do_stable_layer_norm=True, feat_extract_norm="layer")
    torch.manual_seed(0)
    wavlm = WavLMModel(cfg).eval()
    cfg.save_pretrained(folder / "wavlm-large")
    head = EcapaTDNN(feat_dim=16, num_layers=3, channels=16, emb_dim=8).eval()
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.1 * torch.randn_like(p))
    reference = WavLMEcapa(wavlm, head).eval()
    # fairseq / unilm names, as the checkpoint holds them (the inverse of the mapping under test)
    fairseq = {}
    for name, value in wavlm.state_dict().items():
        candidates = [
            name.replace("feature_extractor.conv_layers.0.conv.", "feature_extractor.conv_layers.0.0.")
                .replace("feature_extractor.conv_layers.1.conv.", "feature_extractor.conv_layers.1.0.")
                .replace("feature_extractor.conv_layers.0.layer_norm.", "feature_extractor.conv_layers.0.2.1.")
                .replace("feature_extractor.conv_layers.1.layer_norm.", "feature_extractor.conv_layers.1.2.1.")
                .replace("feature_projection.layer_norm.", "layer_norm.")
                .replace("feature_projection.projection.", "post_extract_proj.")
                .replace("encoder.pos_conv_embed.conv.parametrizations.weight.original0", "encoder.pos_conv.0.weight_g")
                .replace("encoder.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv.0.weight_v")
                .replace("encoder.pos_conv_embed.conv.bias", "encoder.pos_conv.0.bias")
                .replace(".attention.gru_rel_pos_linear.", ".self_attn.grep_linear.")
                .replace(".attention.gru_rel_pos_const", ".self_attn.grep_a")
                .replace(".attention.rel_attn_embed.", ".self_attn.relative_attention_bias.")
                .replace(".attention.", ".self_attn.")
                .replace(".feed_forward.intermediate_dense.", ".fc1.")
                .replace(".feed_forward.output_dense.", ".fc2.")
                .replace("masked_spec_embed", "mask_emb")]
        fname = candidates[0]
        if ".layers." in fname and fname.split(".")[3] == "layer_norm":
            fname = fname.replace(".layer_norm.", ".self_attn_layer_norm.")
        assert unilm_to_hf_wavlm(fname) == name, (fname, name)
        fairseq[f"feature_extract.model.{fname}"] = value
    state = {**head.state_dict(), **fairseq, "loss_calculator.projection.weight": torch.zeros(3, 8)}
    torch.save({"model": state}, folder / "wavlm_large_finetune.pth")
    return folder / "wavlm_large_finetune.pth", folder / "wavlm-large", reference


def test_wavlm_large_ecapa_loads_a_unispeech_layout_checkpoint(tmp_path):
    from speechbrain_codec.metrics.speaker import SpeakerSimilarity

    ckpt, wavlm_cfg, reference = _tiny_ecapa_checkpoint(tmp_path)
    sim = SpeakerSimilarity(f"wavlm-ecapa:{ckpt}@{wavlm_cfg}")
    clip = load_audio(MINI_DATA / "audio" / "en" / f"{EN[0]}.flac", 16000).numpy()
    with torch.no_grad():
        want = reference(torch.as_tensor(clip)[None])[0].numpy()
    assert np.allclose(sim.embed(clip, 16000), want, atol=1e-5)  # every weight went to its place
    assert sim(clip, clip) == pytest.approx(1.0, abs=1e-5)
    torch.save({"model": {"linear.weight": torch.zeros(2, 2)}}, tmp_path / "bad.pth")
    with pytest.raises(CodecError, match="not a WavLM ECAPA-TDNN speaker checkpoint"):
        SpeakerSimilarity(f"wavlm-ecapa:{tmp_path / 'bad.pth'}@{wavlm_cfg}")


def test_utmos_from_onnx_and_torchscript_and_its_worst_value(data, tmp_path):
    toy = ToyMOS().eval()
    clip = load_audio(MINI_DATA / "audio" / "en" / f"{EN[0]}.flac", 16000).numpy()
    with torch.no_grad():
        want = float(toy(torch.as_tensor(clip)[None], 16000))
    onnx = data / "models" / "utmos22_strong.onnx"
    ts = export_utmos(toy, tmp_path / "utmos.pt")
    for path in (onnx, ts):
        assert UTMOS(path)(clip, 16000)["utmos"] == pytest.approx(want, abs=1e-5)
    # 24 kHz audio is resampled to 16 kHz first
    from speechbrain_codec.dataio import resample

    clip24 = resample(torch.as_tensor(clip), 16000, 24000).numpy()
    assert UTMOS(onnx)(clip24, 24000)["utmos"] == pytest.approx(want, abs=0.05)
    with pytest.raises(FileNotFoundError, match="UTMOS checkpoint not found"):
        UTMOS(tmp_path / "missing.onnx")
    # a silent decode scores the bottom of the MOS scale, not nothing
    (tmp_path / "silent").mkdir()
    for u in EN:
        sf.write(tmp_path / "silent" / f"{u}.wav", np.zeros(16000) if u == EN[1] else clip, 16000)
    res = evaluate_systems(data / "m.csv", {"silent": tmp_path / "silent"}, MINI_DATA, metrics=("utmos",),
                           asr="none", workers=1, utmos_path=str(onnx))
    s = res["systems"]["silent"]["summary"]
    assert s["failed"] == 1 and s["utmos"] == pytest.approx((want + 1.0) / 2, abs=1e-5)
