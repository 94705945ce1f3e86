"""speechbrain-codec: recipes and lobes for ultra-low-bitrate semantic neural speech codecs.

torch and torchaudio are deliberately not pinned here: install the matching pair first
(``tools/setup_env.sh`` does; see the README), then this package.
"""

from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec(Path("speechbrain_codec/__init__.py").read_text().split("__all__")[0], version)

setup(
    name="speechbrain-codec",
    version=version["__version__"],
    description="SpeechBrain-style recipes for ultra-low-bitrate semantic neural speech codecs",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["speechbrain_codec", "speechbrain_codec.*"]),
    install_requires=[
        "torch>=2.1",
        "torchaudio>=2.1",
        "speechbrain>=1.1.2,<1.2",
        "hyperpyyaml>=1.2",
        "numpy",
        "soundfile>=0.12",
        "auraloss>=0.4",
    ],
    extras_require={
        "eval": ["pesq>=0.0.4", "pystoi>=0.4", "pocketsphinx>=5.0", "jiwer>=3.0", "whisper-normalizer>=0.1",
                 "warpq>=1.5", "speechmos>=0.0.1", "onnxruntime", "librosa", "resemblyzer>=0.1.4",
                 "amfm-decompy>=1.0.11", "pyloudnorm>=0.1", "matplotlib>=3.7", "pyyaml", "scipy",
                 "onnx>=1.16"],  # onnx: export_utmos (a local UTMOS .onnx)
        "quant": ["vector-quantize-pytorch>=1.20", "constriction>=0.4", "scikit-learn>=1.3", "safetensors>=0.4", "numba>=0.60"],
        "ssl": ["transformers>=4.40", "sentencepiece", "s3tokenizer>=0.3"],  # s3tokenizer: Learnable-Speech tokens
        "align": ["praatio>=6"],
        "test": ["pytest>=8", "hypothesis>=6"],
    },
    entry_points={"console_scripts": ["speechbrain-codec=speechbrain_codec.cli:main"]},
)
