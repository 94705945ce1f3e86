"""Library entry points shared by every recipe (``python -m speechbrain_codec.bin.<name>``).

``train_codec``
    The generic codec trainer: one training phase of any codec (CodecBrain, or GANCodecBrain with
    ``--brain gan``) from an hparams file and CSV manifests; torchrun-ready; exports the
    checkpoint with the lowest validation loss. Models trained on cached features are the same
    trainer with ``codec_input`` set to the cached-feature key.
``train_lm``
    The token-LM trainer (:mod:`speechbrain_codec.lm.train`, re-exported).
``manifest_subset``
    Rows of a manifest kept by language / presence of a transcript (used by the shared stages).

The recipe stages that call them live in ``tools/codec_stages.sh``.
"""
