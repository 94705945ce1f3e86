"""CTCLoss with ``lens``: a padded batch gives the loss of its utterances taken one by one
(each cut to its own length, CTC input lengths its own frame counts), and the model sees its
input normalised as its feature extractor would."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechbrain_codec.losses import CTCLoss
from tests.tiny_models import tiny_ctc


@pytest.fixture(scope="module")
def ctc_dir(tmp_path_factory):
    return tiny_ctc(tmp_path_factory.mktemp("ctc"))


def _batch():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(9600, generator=g) * 0.1, torch.randn(6400, generator=g) * 0.1
    ha, hb = torch.randn(9600, generator=g) * 0.1, torch.randn(9600, generator=g) * 0.1
    hb[6400:] *= 10  # b's reconstruction runs on past its end
    sig = torch.stack([a, torch.nn.functional.pad(b, (0, 3200))])
    return sig, torch.stack([ha, hb]), torch.tensor([1.0, 6400 / 9600]), (a, b, ha, hb[:6400])


@pytest.mark.parametrize("target", ["text", "pseudo"])
def test_padded_batch_equals_one_at_a_time(ctc_dir, target):
    loss = CTCLoss(str(ctc_dir), target=target)
    assert loss.inputs == ("sig_hat", "sig", "text?", "lang?", "lens")
    sig, sig_hat, lens, (a, b, ha, hb) = _batch()
    texts = ["HELLO", "AB"] if target == "text" else None
    one = [loss(ha[None], a[None], texts[:1] if texts else None),
           loss(hb[None], b[None], texts[1:] if texts else None)]
    want = torch.stack(one).mean()  # reduction "mean": per-utterance loss / target length, averaged
    got = loss(sig_hat, sig, texts, None, lens)
    assert abs(got.item() - want.item()) < 1e-4, (got.item(), want.item())
    assert abs(loss(sig_hat, sig, texts).item() - want.item()) > 1e-4  # without lens the padding counts
    _, in_lens = loss.log_probs(sig_hat, lens)
    assert in_lens.tolist() == [loss.log_probs(ha[None])[1].item(), loss.log_probs(hb[None])[1].item()]


def test_input_normalised_like_the_feature_extractor(ctc_dir):
    loss = CTCLoss(str(ctc_dir))
    assert loss.normalize == loss.processor.feature_extractor.do_normalize
    sig, _, lens, (a, b, _, _) = _batch()
    ours = loss.model_inputs(sig, lens)
    for u, x in zip(ours, (a, b)):
        ref = loss.processor.feature_extractor(x.numpy(), sampling_rate=16000).input_values[0]
        assert np.abs(u.numpy() - ref).max() < 1e-5
