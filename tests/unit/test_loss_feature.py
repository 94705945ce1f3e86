"""FocalCodec-S's latent feature loss (focalcodec_s.md §3.1) and the LM-loss codec's SD loss
(lmloss.md §3.5: MSE(decoder(qlats), feats) with a trainable decoder), by hand."""

from __future__ import annotations

import torch
from torch import nn

from speechbrain_codec.losses import DistillLoss, SSLFeatureLoss


def test_latent_feature_loss_is_mse_of_qfeats_to_detached_feats_over_common_frames():
    from speechbrain_codec.losses import LatentFeatureLoss

    assert LatentFeatureLoss.inputs[:2] == ("qfeats", "feats")
    g = torch.Generator().manual_seed(0)
    qfeats = torch.randn(2, 7, 5, generator=g, requires_grad=True)
    feats = torch.randn(2, 6, 5, generator=g, requires_grad=True)
    value = LatentFeatureLoss()(qfeats, feats)
    torch.testing.assert_close(value, ((qfeats[:, :6] - feats) ** 2).mean())
    value.backward()
    assert feats.grad is None and qfeats.grad[:, 6].abs().sum() == 0 and qfeats.grad[:, :6].abs().sum() > 0
    # padding masked with lens: the second utterance has 3 real frames of the batch's 6
    lens = torch.tensor([1.0, 0.5])
    want = torch.cat([((qfeats[0, :6] - feats[0]) ** 2).flatten(), ((qfeats[1, :3] - feats[1, :3]) ** 2).flatten()]).mean()
    torch.testing.assert_close(LatentFeatureLoss()(qfeats, feats, lens), want)


def test_ssl_feature_loss_is_no_longer_called_the_focalcodec_feature_loss():
    import speechbrain_codec.losses.feature as feature

    assert "perceptual" in SSLFeatureLoss.__doc__.lower() and "not FocalCodec-S" in SSLFeatureLoss.__doc__
    assert "FocalCodec-S feature" not in feature.__doc__.split("``SSLFeatureLoss``")[-1]


def test_sd_loss_trains_the_decoder_and_equals_the_hand_computation():
    assert DistillLoss.inputs == ("qlats", "feats")
    torch.manual_seed(0)
    decoder = nn.Linear(4, 6)  # 4-d quantised stream -> 6-d "HuBERT" features
    loss = DistillLoss(decoder)
    assert any(p is decoder.weight for p in loss.parameters())  # its optimiser can see it
    qlats = torch.randn(2, 5, 4, requires_grad=True)
    feats = torch.randn(2, 4, 6, requires_grad=True)  # one frame fewer: cut to the common length
    value = loss(qlats, feats)
    want = ((qlats[:, :4] @ decoder.weight.T + decoder.bias - feats) ** 2).mean()
    torch.testing.assert_close(value, want)
    value.backward()
    assert decoder.weight.grad is not None and decoder.weight.grad.abs().sum() > 0
    assert qlats.grad is not None and feats.grad is None  # the target is detached


def test_sd_loss_with_identity_and_channels_first_decoders():
    q, z = torch.randn(1, 3, 2), torch.randn(1, 3, 2)
    torch.testing.assert_close(DistillLoss(nn.Identity())(q, z), ((q - z) ** 2).mean())
    conv = nn.Conv1d(2, 2, 1)  # [B, C, T] decoder
    want = ((conv(q.transpose(1, 2)).transpose(1, 2) - z) ** 2).mean()
    torch.testing.assert_close(DistillLoss(conv, channels_first=True)(q, z), want)
