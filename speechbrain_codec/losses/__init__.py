"""Loss bricks. Signal losses take ``(sig_hat [B, T], sig [B, T])``; ASR losses also take
``texts``/``langs`` (``takes_text``); latent losses take ``(qlats, lats)`` (``takes_latents``).

| loss | paper | inputs |
|---|---|---|
| ``MultiResolutionMelLoss`` | HiFi-GAN / Vocos mel L1 | signals |
| ``MultiResolutionSTFTLoss`` | Parallel WaveGAN MR-STFT | signals |
| ``SSLFeatureLoss`` | FocalCodec-S feature MSE | signals |
| ``WhisperTokenLoss`` | FocalCodec-S / LM-loss codec Whisper CE | signals + texts, langs |
| ``CTCLoss`` | CTC ASR loss | signals + texts |
| ``DistillLoss`` | LM-loss codec distill | latents |
| ``TTRLoss`` | LM-loss codec TTR (frozen pretrained summariser) | signals + alignments (``takes_alignment``) |
| ``generator_adversarial_loss``, ``discriminator_loss``, ``feature_matching_loss`` | HiFi-GAN LSGAN + FM | discriminator outputs |
"""

from .adversarial import discriminator_loss, feature_matching_loss, generator_adversarial_loss
from .asr import CTCLoss, WhisperTokenLoss
from .feature import DistillLoss, SSLFeatureLoss
from .spectral import MelLoss, MultiResolutionMelLoss, MultiResolutionSTFTLoss
from .ttr import BertTargets, TTRLoss, TTRSummariser, pretrain_summariser

__all__ = [
    "BertTargets",
    "CTCLoss",
    "DistillLoss",
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
