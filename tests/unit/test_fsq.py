import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from speechbrain_codec.quantizers import FSQ, codebook_stats


def test_shapes_bits_and_round_trip():
    q = FSQ([8, 5, 5, 5], dim=16, num_codebooks=2)
    out = q(torch.randn(3, 11, 16))
    assert out.qlats.shape == (3, 11, 16)
    assert out.toks.shape == (3, 11, 2)
    assert out.toks.dtype == torch.int64
    assert q.codebook_sizes == [1000, 1000]
    assert q.bits_per_frame == pytest.approx(2 * math.log2(1000))
    assert torch.allclose(q.toks_to_qlats(out.toks), out.qlats, atol=1e-6)
    assert out.toks.min() >= 0 and out.toks.max() < 1000


def test_straight_through_gradient_reaches_input():
    q = FSQ([8, 5, 5, 5], dim=8)
    lats = torch.randn(2, 5, 8, requires_grad=True)
    q(lats).qlats.pow(2).sum().backward()
    assert lats.grad is not None and lats.grad.abs().sum() > 0


def test_equals_vector_quantize_pytorch():
    vqp = pytest.importorskip("vector_quantize_pytorch")
    for levels in ([8, 5, 5, 5], [7, 5, 5, 5, 5], [4, 4]):
        ours, ref = FSQ(levels), vqp.FSQ(levels=levels)
        z = torch.randn(2, 40, len(levels)) * 3
        out = ours(z)
        ref_q, ref_idx = ref(z)
        assert torch.equal(out.toks[..., 0], ref_idx)
        assert torch.allclose(out.qlats, ref_q, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(2, 9), min_size=1, max_size=5), st.integers(1, 20), st.data())
def test_indices_codes_bijection(levels, n, data):
    q = FSQ(levels)
    size = math.prod(levels)
    toks = torch.tensor(data.draw(st.lists(st.integers(0, size - 1), min_size=n, max_size=n)))
    codes = q.indices_to_codes(toks.view(1, n, 1))
    assert torch.equal(q.codes_to_indices(codes).view(-1), toks)
    assert codes.abs().max() <= 1.0


def test_clear_errors():
    q = FSQ([8, 5, 5, 5], dim=16)
    with pytest.raises(ValueError, match=r"expects lats \[B, T, 16\]"):
        q(torch.randn(2, 5, 15))
    with pytest.raises(ValueError, match="empty"):
        q(torch.randn(2, 0, 16))
    with pytest.raises(ValueError, match="NaN"):
        q(torch.full((1, 3, 16), float("nan")))
    with pytest.raises(ValueError, match="out of range"):
        q.toks_to_qlats(torch.tensor([[[1000]]]))
    with pytest.raises(ValueError, match="levels"):
        FSQ([1, 5])


def test_codebook_stats():
    stats = codebook_stats(torch.tensor([[[0], [0], [1], [1]]]), [4])
    assert stats["usage"] == [0.5]
    assert stats["perplexity"][0] == pytest.approx(2.0)
