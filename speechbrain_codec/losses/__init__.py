"""Loss bricks. Each takes ``(sig_hat [B, T], sig [B, T])`` or features and returns a scalar."""

from .spectral import MultiResolutionMelLoss, MultiResolutionSTFTLoss

__all__ = ["MultiResolutionMelLoss", "MultiResolutionSTFTLoss"]
