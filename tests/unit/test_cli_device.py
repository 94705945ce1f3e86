"""``--device``: the codec, the signals and the tokens go to the requested device and the
results come back to the CPU before writing; a device that is not available is one line.

Without a GPU the placement is checked by spying on the command line's only two movers,
``cli.to_device`` and ``cli.to_cpu``, and on the codec's ``sig_to_toks`` / ``toks_to_sig``:
every tensor the codec receives must be one ``to_device`` returned for the requested device,
and every tensor that is written must have gone through ``to_cpu`` straight from the codec.
"""

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_codec import cli
from speechbrain_codec.bitstream import read_sbc
from speechbrain_codec.cli import decode_file, encode_file, main
from speechbrain_codec.codec import Codec
from speechbrain_codec.utils import CodecError


class Spy:
    """Records moves; tags moved tensors instead of moving them (no GPU here)."""

    def __init__(self):
        self.moves, self.codec_inputs, self.to_cpu_inputs = [], [], []
        self.in_batch = False

    def to_device(self, x, device):
        self.moves.append((type(x).__name__, str(device)))
        if isinstance(x, torch.Tensor):
            x = x.clone()
            x.sbc_device = str(device)
        return x

    def to_cpu(self, x):
        self.to_cpu_inputs.append(getattr(x, "sbc_from_codec", False))
        return x.detach().cpu()

    def watch(self, codec):
        for name in ("sig_to_toks", "toks_to_sig"):
            real = getattr(codec, name)

            def wrapped(x, *args, _real=real, _name=name):
                if not self.in_batch:  # a batched call's own inner calls see its padded stack
                    self.codec_inputs.append((_name, getattr(x, "sbc_device", "not moved")))
                out = _real(x, *args)
                out.sbc_from_codec = True
                return out

            setattr(codec, name, wrapped)
        for name in ("batch_sig_to_toks", "batch_toks_to_sig"):  # folders and manifests: lists of tensors
            real = getattr(codec, name)

            def wrapped_list(xs, *args, _real=real, _name=name[len("batch_"):]):
                self.codec_inputs += [(_name, getattr(x, "sbc_device", "not moved")) for x in xs]
                self.in_batch = True
                try:
                    outs = _real(xs, *args)
                finally:
                    self.in_batch = False
                for out in outs:
                    out.sbc_from_codec = True
                return outs

            setattr(codec, name, wrapped_list)
        return codec


@pytest.fixture
def spy(monkeypatch):
    s = Spy()
    monkeypatch.setattr(cli, "to_device", s.to_device)
    monkeypatch.setattr(cli, "to_cpu", s.to_cpu)
    return s


def test_encode_and_decode_file_use_the_device(checkpoint, mini_clip, tmp_path, spy):
    codec = spy.watch(Codec.from_pretrained(checkpoint))
    sbc, wav = tmp_path / "a.sbc", tmp_path / "a.wav"
    encode_file(codec, mini_clip, sbc, device="cuda:1")
    assert spy.moves == [("Tensor", "cuda:1")]
    assert spy.codec_inputs == [("sig_to_toks", "cuda:1")]
    assert spy.to_cpu_inputs == [True]  # tokens back to the CPU before packing
    decode_file(codec, sbc, wav, device="cuda:1")
    assert spy.moves[1:] == [("Tensor", "cuda:1")]
    assert spy.codec_inputs[1:] == [("toks_to_sig", "cuda:1")]
    assert spy.to_cpu_inputs[1:] == [True]  # the signal back to the CPU before writing
    assert sf.info(str(wav)).frames == sf.info(str(mini_clip)).frames


def test_main_places_codec_and_tensors(checkpoint, mini_clip, tmp_path, spy, monkeypatch):
    loads = []
    real_load = Codec.from_pretrained

    def from_pretrained(cls, source, map_location="cpu", trust_remote_code=False):
        loads.append(str(map_location))
        return spy.watch(real_load(source))

    monkeypatch.setattr(Codec, "from_pretrained", classmethod(from_pretrained))
    monkeypatch.setattr(cli, "resolve_device", lambda spec: torch.device(spec))  # no GPU needed
    sbc, folder = tmp_path / "a.sbc", tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "b.wav", 0.1 * np.random.default_rng(0).standard_normal(16000), 16000)
    runs = [["encode", str(mini_clip), str(sbc)], ["decode", str(sbc), str(tmp_path / "a.wav")],
            ["encode", str(folder), str(tmp_path / "sbc")], ["decode", str(tmp_path / "sbc"), str(tmp_path / "wav")]]
    for args in runs:
        assert main([*args, "--checkpoint", str(checkpoint), "--device", "cuda:0"]) == 0
    assert loads == ["cuda:0"] * 4
    assert spy.moves == [("Codec", "cuda:0"), ("Tensor", "cuda:0")] * 4
    assert [d for _, d in spy.codec_inputs] == ["cuda:0"] * 4 and all(spy.to_cpu_inputs), spy.codec_inputs
    assert read_sbc(tmp_path / "sbc" / "b.sbc").num_samples == 16000
    assert sf.info(str(tmp_path / "wav" / "b.wav")).frames == 16000


def test_cuda_requested_but_not_available(checkpoint, mini_clip, tmp_path, capsys, monkeypatch):
    from speechbrain_codec.dataio import write_manifest

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    write_manifest(tmp_path / "m.csv", [{"ID": "a", "duration": 3.0, "wav": str(mini_clip), "spk_id": "s",
                                         "lang": "en", "text": "x"}])
    sbc = tmp_path / "a.sbc"
    runs = [["encode", str(mini_clip), str(sbc), "--checkpoint", str(checkpoint)],
            ["decode", str(sbc), str(tmp_path / "a.wav"), "--checkpoint", str(checkpoint)],
            ["fit-entropy", "--manifest", str(tmp_path / "m.csv"), "--checkpoint", str(checkpoint)],
            ["evaluate", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "r.json"), "--asr", "none"]]
    for args in runs:
        assert main([*args, "--device", "cuda"]) == 1, args
        err = capsys.readouterr().err.strip()
        assert err == "error: --device cuda: CUDA requested but not available (torch sees no GPU); use --device cpu"
    assert not sbc.exists() and not (tmp_path / "r.json").exists()
    assert main(["encode", str(mini_clip), str(sbc), "--checkpoint", str(checkpoint), "--device", "gpu"]) == 1
    assert capsys.readouterr().err.strip() == "error: --device gpu: not a device; use cpu, cuda, cuda:N or mps"


def test_resolve_device():
    resolve_device = cli.resolve_device
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(CodecError, match="not supported"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(CodecError, match="CUDA requested but not available"):
            resolve_device("cuda:0")
    else:
        with pytest.raises(CodecError, match="only"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_evaluate_passes_the_device_to_the_asr(mini_clip, tmp_path, monkeypatch):
    from speechbrain_codec import evaluate
    from speechbrain_codec.dataio import write_manifest
    from speechbrain_codec.metrics import asr

    made = []
    monkeypatch.setattr(asr, "make_asr", lambda spec, device="cpu": made.append((spec, device)) or "model")
    evaluate._init_worker("whisper:some/model", ("stoi",), None, 1, "resemblyzer", "cuda:1")
    assert evaluate._asr() == "model" and made == [("whisper:some/model", "cuda:1")]
    # the command line hands --device to evaluate_systems
    seen = {}

    def fake_evaluate(*args, **kwargs):
        seen["device"] = args[8] if len(args) > 8 else kwargs.get("device")
        return {"wall_seconds": 0.0, "systems": {}}

    monkeypatch.setattr(evaluate, "evaluate_systems", fake_evaluate)
    monkeypatch.setattr(cli, "resolve_device", lambda spec: torch.device(spec))
    write_manifest(tmp_path / "m.csv", [{"ID": "a", "duration": 3.0, "wav": str(mini_clip), "spk_id": "s",
                                         "lang": "en", "text": "x"}])
    assert main(["evaluate", "--manifest", str(tmp_path / "m.csv"), "--out", str(tmp_path / "r.json"),
                 "--device", "cuda:1"]) == 0
    assert seen["device"] == "cuda:1"
