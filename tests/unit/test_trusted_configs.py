"""Untrusted configurations: a codec.yaml (HyperPyYAML, which calls what it names) that names code
outside the toolkit is refused by ``Codec.from_pretrained`` and the command line unless the user
opts in (``trust_remote_code`` / ``--trust-remote-code``); the toolkit's own codecs load as before,
and nothing in a refused file runs."""

import pytest

from speechbrain_codec.cli import main
from speechbrain_codec.codec import Codec, check_trusted
from speechbrain_codec.utils import CodecError

from ..conftest import TINY_CODEC_YAML, tiny_codec


TOOLKIT_YAML = TINY_CODEC_YAML  # the toolkit's classes only: loads without the opt-in


def _export(folder, yaml_text):
    tiny_codec().save_pretrained(folder, yaml_text)
    return folder


def test_toolkit_codec_loads_without_opt_in(tmp_path):
    text = (
        "codec: !new:speechbrain_codec.codec.Codec\n"
        "    encoder: !new:speechbrain_codec.encoders.MelEncoder {n_mels: 16}\n"
    )
    check_trusted(text)  # the toolkit's own classes: no opt-in needed
    check_trusted("act: !new:torch.nn.GELU\n")


@pytest.mark.parametrize("line", ["x: !apply:os.system [touch {m}]", "x: !apply:subprocess.run [[touch, {m}]]",
                                  "x: !name:builtins.exec", "x: !include:other.yaml", "x: !module:os"])
def test_code_outside_the_toolkit_is_refused_and_not_run(tmp_path, line, capsys):
    marker = tmp_path / "ran"
    folder = _export(tmp_path / "c", "codec: !apply:tests.conftest.tiny_codec []\n" + line.format(m=marker) + "\n")
    with pytest.raises(CodecError, match="outside the toolkit.*trust_remote_code=True"):
        Codec.from_pretrained(folder)
    assert main(["info", "--checkpoint", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "--trust-remote-code" in err and err.count("\n") == 1
    assert not marker.exists()


def test_opt_in_loads_it(tmp_path):
    folder = _export(tmp_path / "c", "codec: !apply:tests.conftest.tiny_codec []\n")
    with pytest.raises(CodecError, match="tests.conftest.tiny_codec"):
        Codec.from_pretrained(folder)
    codec = Codec.from_pretrained(folder, trust_remote_code=True)
    assert codec.bitrate > 0
    assert main(["info", "--checkpoint", str(folder), "--trust-remote-code"]) == 0


def test_every_recipe_codec_yaml_is_trusted():
    """What the trainer exports is the recipe's codec yaml resolved (comments included): every one
    must load without the opt-in."""
    from ..conftest import ROOT

    files = sorted(ROOT.glob("recipes/**/hparams/codec/*.yaml"))
    assert len(files) >= 10
    for path in files:
        check_trusted(path.read_text(encoding="utf-8"), path)


@pytest.mark.parametrize("line", [
    "x: !applyref:os.system [touch {m}]",
    "x: !!python/object/apply:os.system [touch {m}]",
    'x: !tuple "(!!python/object/apply:os.system [touch {m}],)"',
    "x: (!!python/object/apply:os.system [touch {m}],)",
    "x: !apply:speechbrain_codec.utils.os.system [touch {m}]",
    "x: !apply:torch.nn.modules.module.torch.serialization.os.system [touch {m}]",
    "x: !apply:speechbrain_codec.utils.atomic_write_text [{m}, pwned]",
    "x: !name:speechbrain_codec.cli.main",
])
def test_known_bypasses_are_refused_and_not_run(tmp_path, line):
    """The ways past a prefix check (a review found them): hyperpyyaml's other code tags, PyYAML's
    python tags, tuples parsed with an unsafe loader, attributes that lead out of the toolkit's
    modules, and the toolkit's own functions that are not codec factories."""
    marker = tmp_path / "ran"
    folder = _export(tmp_path / "c", TOOLKIT_YAML + line.format(m=marker) + "\n")
    with pytest.raises(CodecError, match="outside the toolkit"):
        Codec.from_pretrained(folder)
    assert not marker.exists()


def test_self_referencing_aliases_do_not_hang():
    with pytest.raises(CodecError):
        check_trusted("a: &a [*a]\nb: !apply:os.getcwd []\n")
    check_trusted("a: &a [1, 2]\nb: *a\nc: [*a, *a]\n")


def test_a_toolkit_checkpoint_loads_without_opt_in(tmp_path):
    assert Codec.from_pretrained(_export(tmp_path / "ok", TOOLKIT_YAML)).bitrate > 0
