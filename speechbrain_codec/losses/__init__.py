"""Loss bricks. Each loss names its positional arguments in a class attribute ``inputs``
(absent: ``("sig_hat", "sig")``); :class:`~speechbrain_codec.training.CodecBrain` calls
``fn(*[value_of(name) for name in fn.inputs])``. Names: ``sig_hat``/``sig`` (reconstruction and
target at the codec's output rate, common length), ``lens`` (relative lengths of the padded
batch), a :class:`~speechbrain_codec.codec.CodecOutput` field (``toks``, ``lats``, ``qlats``,
``feats`` = encoder output, ``qfeats`` = decompressor output / decoder input) or a batch key
(``text``, ``lang``, ``alignment``, ...). Every tensor a loss uses is a buffer or a submodule, so
``loss.to(device)`` moves it.

| loss | paper | ``inputs`` |
|---|---|---|
| ``MelLoss``, ``MultiResolutionMelLoss`` | HiFi-GAN / LM-loss codec mel L1 (§3.2 config in ``spectral``), Vocos / DAC multi-resolution | signals |
| ``MultiResolutionSTFTLoss`` | Parallel WaveGAN MR-STFT | signals |
| ``LatentFeatureLoss`` | FocalCodec-S feature MSE (decompressor output vs encoder features) | ``qfeats, feats, lens`` |
| ``SSLFeatureLoss`` | perceptual re-encoding MSE through a frozen SSL model | signals |
| ``WhisperTokenLoss`` | FocalCodec-S / LM-loss codec Whisper CE | ``sig_hat, sig, text, lang, lens`` |
| ``CTCLoss`` | CTC ASR loss | ``sig_hat, sig, text, lang, lens`` |
| ``DistillLoss(decoder)`` | LM-loss codec SD: MSE(decoder(qlats), feats), decoder trained | ``qlats, feats`` |
| ``TTRLoss`` | LM-loss codec TTR (frozen pretrained summariser) | ``sig_hat, alignment`` |
| ``generator_adversarial_loss``, ``discriminator_loss``, ``feature_matching_loss`` | HiFi-GAN LSGAN + FM, summed over sub-discriminators (and layers) | discriminator outputs |
"""

from .adversarial import discriminator_loss, feature_matching_loss, generator_adversarial_loss
from .asr import CTCLoss, WhisperTokenLoss
from .feature import DistillLoss, LatentFeatureLoss, SSLFeatureLoss
from .spectral import MelLoss, MultiResolutionMelLoss, MultiResolutionSTFTLoss
from .ttr import BertTargets, TTRLoss, TTRSummariser, pretrain_summariser

__all__ = [
    "BertTargets",
    "CTCLoss",
    "DistillLoss",
    "LatentFeatureLoss",
    "MelLoss",
    "MultiResolutionMelLoss",
    "MultiResolutionSTFTLoss",
    "SSLFeatureLoss",
    "TTRLoss",
    "TTRSummariser",
    "WhisperTokenLoss",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "pretrain_summariser",
]
