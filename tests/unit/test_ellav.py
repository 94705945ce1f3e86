"""ELLA-V GAR acoustic model of DP-SLM: vocabulary, interleaving, inference rules, overfitting."""

import pytest
import torch

from speechbrain_codec.lm.ellav import (
    BOS, ELLAV, EOP, EOS, UNK, ELLAVVocab, interleave, sample_top_p, train_ellav,
)
from speechbrain_codec.utils import CodecError


def tiny(num_units=12, num_codes=16, seed=0):
    torch.manual_seed(seed)
    return ELLAV(num_units, num_codes, dim=32, num_layers=2, num_heads=4, num_kv_heads=4, ffn_dim=64,
                 max_positions=512)


def test_vocabulary_layout():
    assert (UNK, BOS, EOP, EOS) == (0, 1, 2, 3)
    v = ELLAVVocab(500)
    assert v.size == 4 + 500 + 4096
    table = v.tokens()
    # unit strings sorted lexicographically from id 4: u0 u1 u10 u100 u101 ... u109 u11 u110 ...
    assert table[:10] == ["<unk>", "<s>", "<eop>", "</s>", "u0", "u1", "u10", "u100", "u101", "u102"]
    assert table[13:16] == ["u106", "u107", "u108"] and table[16] == "u109" and table[17] == "u11"
    assert [v.unit_id(u) for u in (0, 1, 10, 100, 11, 2, 499)] == [4, 5, 6, 7, 17, table.index("u2"), table.index("u499")]
    assert table[503] == "u99" and v.unit_id(99) == 503
    # codec tokens in numeric order after the units: "0" at K + 4, "4095" last
    assert table[504] == "0" and table[504 + 4095] == "4095" and v.code_id(0) == 504 and v.code_id(4095) == 4599
    assert all(v.id_unit(v.unit_id(u)) == u for u in range(500))
    assert v.codes([1, 504, 7, 2, 4599, 3]) == [0, 4095]
    with pytest.raises(CodecError):
        v.code_id(4096)


def test_interleaving_by_hand():
    # three runs at 50 Hz (u5 0-60 ms, u7 60-100 ms, u2 100-200 ms), eight codes at 40 Hz (every 25 ms)
    v = ELLAVVocab(12, num_codes=4096)  # u2 -> 8, u5 -> 11, u7 -> 13 (u10, u11 sort before u2); codes from 16
    ex = interleave([5, 5, 5, 7, 7, 2, 2, 2, 2, 2], [100, 101, 102, 103, 104, 105, 106, 107], v)
    c = [16 + x for x in range(100, 108)]
    expected = [11, 13, 8,                       # global advance: every deduplicated unit
                BOS,
                11, c[0], c[1], c[2],            # u5 at 0 ms; codes at 0, 25, 50 ms
                EOP, 13, c[3],                   # 60 ms: u5's EOP, then u7; code at 75 ms
                EOP, 8, c[4], c[5], c[6], c[7],  # 100 ms: EOP before u2 before the code at 100 ms
                EOP, EOS]
    assert ex.ids == expected
    assert ex.targets == [t in (EOP, EOS) or t >= 16 for t in expected]
    assert not any(ex.targets[:5])  # the units and BOS are inputs only
    # the reference's off-by-one: "u0" (id 4) trained as a target, only when asked
    ex0 = interleave([0, 0, 3], [1, 2], ELLAVVocab(12), unit_rate=50, code_rate=40, tolerance=0.1)
    assert ex0.ids[0] == 4 and not ex0.targets[0]
    assert interleave([0, 0, 3], [1, 2], ELLAVVocab(12), reference_u0_target=True).targets[0]
    with pytest.raises(CodecError, match="differ by more than 0.1 s"):
        interleave([1] * 50, [0] * 50, v)  # 1 s of units, 1.25 s of codes


def test_sample_top_p():
    torch.manual_seed(0)
    for _ in range(50):
        logits = torch.randn(37)
        assert sample_top_p(logits, 0.0) == sample_top_p(logits, 1e-9) == int(logits.argmax())
    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    draws = {sample_top_p(logits, 0.7, generator=gen) for _ in range(200)}
    assert draws == {0, 1}  # the nucleus of 0.7 is the two most probable tokens
    draws = {sample_top_p(logits, 1.0, generator=gen) for _ in range(400)}
    assert draws == {0, 1, 2, 3}


def test_cap_forces_eop_and_units_are_forced():
    m = tiny().eval()
    with torch.no_grad():  # make the model always want codec token 5 (never EOP by itself)
        m.model.lm_head.bias.zero_()
        m.model.lm_head.bias[m.vocab.code_id(5)] = 100.0
    units = [3, 11, 0, 7]
    codes, ids = m.generate(units, max_codec_tokens_per_phone=3, return_ids=True)
    v = m.vocab
    c5 = v.code_id(5)
    expected = [c5] * 3 + [EOP, v.unit_id(11)] + [c5] * 3 + [EOP, v.unit_id(0)] + [c5] * 3 + [EOP, v.unit_id(7)] \
        + [c5] * 3 + [EOP, EOS]
    assert ids == expected and codes == [5] * 12
    # max_tokens caps what is generated
    assert len(m.generate(units, max_codec_tokens_per_phone=3, max_tokens=5, return_ids=True)[1]) == 5


def test_top_p_to_zero_equals_greedy():
    m = tiny(seed=3).eval()
    units = [4, 9, 1, 2, 8]
    greedy = m.generate(units, max_codec_tokens_per_phone=4, return_ids=True)
    near_zero = m.generate(units, max_codec_tokens_per_phone=4, top_p=1e-9,
                           generator=torch.Generator().manual_seed(1), return_ids=True)
    assert greedy == near_zero and len(greedy[1]) > 1
    # after each EOP: the next unit of the prompt, after the last unit's: EOS
    ids = greedy[1]
    after = [ids[i + 1] for i, t in enumerate(ids) if t == EOP]
    assert after == ([m.vocab.unit_id(u) for u in units[1:]] + [EOS])[: len(after)]
    assert all(ids[i - 4 : i].count(EOP) or not all(m.vocab.is_code(t) for t in ids[i - 4 : i + 1])
               for i in range(4, len(ids)))  # never 5 codes in a row with a cap of 4


def test_overfits_one_pair_and_reproduces_it_greedily(tmp_path):
    frame_units = [5, 5, 5, 7, 7, 2, 2, 2, 2, 2, 10, 10, 10, 10]  # 0.28 s at 50 Hz
    codes = [3, 14, 14, 1, 9, 0, 7, 12, 5, 5, 2]                  # 0.275 s at 40 Hz
    m = tiny()
    log = train_ellav(m, [(frame_units, codes)], steps=120, batch_size=1, grad_accumulation=1,
                      peak_lr=3e-3, start_lr=1e-4, final_lr=3e-3, warmup=5, decay=100)
    assert log["losses"][-1] < 0.05 < log["losses"][0]
    got = m.generate([5, 7, 2, 10])
    assert got == codes
    m.save_pretrained(tmp_path / "ellav")
    assert ELLAV.from_pretrained(tmp_path / "ellav").generate([5, 7, 2, 10]) == codes
    with pytest.raises(CodecError, match="no units"):
        m.generate([])


def test_dpslm_codec_sends_deduplicated_units_and_resynthesises(tmp_path):
    import math

    from speechbrain_codec.bin.tiny_models import tiny_wavlm
    from speechbrain_codec.cli import encode_file
    from speechbrain_codec.bitstream import read_sbc
    from speechbrain_codec.dataio import save_audio
    from speechbrain_codec.lm.ellav import DPSLMCodec
    from speechbrain_codec.quantizers.dpdp import dedup
    from speechbrain_codec.wavtokenizer import tiny_wavtokenizer

    wavlm = tiny_wavlm(tmp_path / "wavlm", hidden=16, layers=12)
    torch.manual_seed(0)
    codec = DPSLMCodec(str(wavlm), torch.randn(8, 16), tiny(8, 4096), tiny_wavtokenizer(hop=600), lmbda=0.5,
                       max_codec_tokens_per_phone=2, max_tokens=40).eval()
    spec = codec.layout["units"]
    assert (spec.kind, spec.durations, spec.codebook_sizes, spec.hop_length) == ("units", False, (8,), 320)
    assert codec.output_sample_rate == 24000
    sig = 0.1 * torch.randn(1, 16000)
    frames = codec.sig_to_toks(sig)["units"]
    assert frames.shape == (1, 50, 1)  # 50 Hz frame-level units before dedup
    save_audio(tmp_path / "a.wav", sig[0], 16000)
    facts = encode_file(codec, tmp_path / "a.wav", tmp_path / "a.sbc")
    sent = read_sbc(tmp_path / "a.sbc").token_dict()["units"][:, 0]
    assert sent.tolist() == dedup(frames[0, :, 0].numpy())[0].tolist()
    assert facts["payload_bytes"] == math.ceil(len(sent) * 3 / 8)  # log2 8 = 3 bits per unit, no run lengths
    out = codec.toks_to_sig({"units": torch.as_tensor(sent)[None, :, None]})
    assert out.shape[0] == 1 and out.shape[-1] % 600 == 0 and out.shape[-1] > 0
    # frame-level units (sig_to_toks) decode as their deduplicated sequence
    torch.testing.assert_close(codec.toks_to_sig({"units": frames}), out)
    with pytest.raises(CodecError, match="K = 8 units"):
        DPSLMCodec(str(wavlm), torch.randn(16, 16), tiny(8, 4096), tiny_wavtokenizer(hop=600))
