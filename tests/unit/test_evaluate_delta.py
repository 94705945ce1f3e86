"""FocalCodec-S's dCER (focalcodec_s.md §5.2): per-utterance CER(reconstruction) - CER(original),
both against the ground truth, averaged over utterances; not the corpus-level dWER."""

import pytest

from speechbrain_codec.evaluate import _delta_utt, _summary


def test_delta_is_the_mean_of_per_utterance_differences_and_can_be_negative():
    rows = {"a": {"lang": "zh", "text": "甚至出现交易"}, "b": {"lang": "zh", "text": "几乎停滞"},
            "c": {"lang": "en", "text": "hello world"}}
    original = {"a": {"hyp": "甚 至 出 现 交 易"}, "b": {"hyp": "几 乎 停"}, "c": {"hyp": "hello world"}}
    system = {"a": {"hyp": "甚 至 出 交 易"}, "b": {"hyp": "几 乎 停 滞"}, "c": {"hyp": "hello"}}
    ref_hyps = {k: v["hyp"] for k, v in original.items()}
    _summary(original, rows, ref_hyps)
    summary = _summary(system, rows, ref_hyps)
    delta = _delta_utt(system, original)
    # a: 1/6 - 0; b: 0 - 1/4 (the reconstruction is better than the original)
    assert delta["dcer_utt"] == pytest.approx((1 / 6 - 1 / 4) / 2)
    assert delta["dwer_utt"] == pytest.approx(0.5)
    # corpus-level CER against the ground truth is another number
    assert summary["cer"] == pytest.approx(1 / 10)


def test_utterances_the_original_lacks_are_left_out():
    original = {"a": {"cer": 0.1}, "b": {"error": "missing"}}
    system = {"a": {"cer": 0.3}, "b": {"cer": 0.9}}
    delta = _delta_utt(system, original)
    assert delta["dwer_utt"] is None and delta["dcer_utt"] == pytest.approx(0.2)
    assert delta["ci95"]["dcer_utt"] == pytest.approx([0.2, 0.2])  # one difference: a point interval
