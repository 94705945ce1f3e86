"""Per-language text normalisers (speechbrain_codec.textnorm) and Whisper language codes."""

from __future__ import annotations

import unicodedata

import pytest

from speechbrain_codec import textnorm
from speechbrain_codec.textnorm import (
    WHISPER_LANGUAGES,
    get_normaliser,
    normalise,
    normalise_cjk,
    normalise_latin,
    normaliser_name,
    register_normaliser,
    whisper_language,
)
from speechbrain_codec.utils import CodecError


@pytest.mark.parametrize("raw, want", [
    ("Hello, World!", "hello world"),
    ("Zażółć gęślą jaźń.", "zażółć gęślą jaźń"),                # Polish diacritics kept
    ("L'été — «très» bien…", "l'été très bien"),                 # French quotes, dash, ellipsis
    ("don’t 'quoted' rock'n'roll", "don't quoted rock'n'roll"),  # inner apostrophes kept, outer stripped
    ("STRASSE Straße", "strasse straße"),                        # lower(), not casefold(): ß stays
    ("Привет, МИР!", "привет мир"),                              # Cyrillic
    ("well-known\u200bword", "well knownword"),                  # hyphen -> space, zero-width dropped
    ("£5 + 3 = 8%", "5 3 8"),                                    # symbols dropped, digits kept
    ("  \t\n ", ""),
])
def test_latin(raw, want):
    assert normalise_latin(raw) == want


def test_latin_composes_decomposed_diacritics():
    decomposed = unicodedata.normalize("NFD", "Café Ñandú")
    assert len(decomposed) > len("Café Ñandú")
    out = normalise_latin(decomposed)
    assert out == "café ñandú" and out == unicodedata.normalize("NFC", out)


@pytest.mark.parametrize("raw, want", [
    ("甚至出现交易几乎停滞的情况", "甚 至 出 现 交 易 几 乎 停 滞 的 情 况"),
    ("「你好」，世界！？。、", "你 好 世 界"),                    # full-width punctuation stripped
    ("我们 OK，好吗？", "我 们 ok 好 吗"),                         # Latin run kept as one word
    ("ＡＢＣ１２３元", "abc123 元"),                                # full-width letters/digits -> ASCII
    ("カタカナとひらがな・漢字々", "カ タ カ ナ と ひ ら が な 漢 字 々"),
    ("", ""),
])
def test_cjk(raw, want):
    assert normalise_cjk(raw) == want


def test_defaults_per_language():
    assert normaliser_name("zh") == "cjk" and normaliser_name("zh-CN") == "cjk" and normaliser_name("ja") == "cjk"
    assert normaliser_name("pl") == "latin" and normaliser_name("xx") == "latin"
    assert normalise("你好，世界", "cmn") == "你 好 世 界"
    assert normalise("Ça VA", "fr") == "ça va"
    assert normalise("Ça VA", "fr", name="none") == "Ça VA"


def test_register_and_select_by_name(monkeypatch):
    monkeypatch.setattr(textnorm, "_BY_LANG", {})
    monkeypatch.setattr(textnorm, "_BY_NAME", dict(textnorm._BY_NAME))
    register_normaliser("qab", lambda t: t[::-1], name="reverse")
    assert normalise("abc", "qab") == "cba" and normalise("abc", "qab-XX") == "cba"
    assert get_normaliser("reverse")("ab") == "ba"
    assert normalise("abc", "en") == "abc"  # other languages keep their defaults
    # an explicit name wins over the language's registered one
    assert normalise("A,b", "qab", name="latin") == "a b"
    with pytest.raises(CodecError, match="is not callable"):
        register_normaliser("qac", "not a function")


def test_module_function_names_and_unknown_names():
    assert get_normaliser("speechbrain_codec.textnorm:normalise_cjk") is normalise_cjk
    with pytest.raises(CodecError, match=r"unknown text normaliser 'klingon': use one of \['cjk', 'latin', 'none'"):
        get_normaliser("klingon")
    with pytest.raises(CodecError, match="cannot import it"):
        get_normaliser("no_such_module_x:fn")


@pytest.mark.parametrize("code, want", [
    ("en", "en"), ("eng", "en"), ("pl", "pl"), ("pol", "pl"), ("fre", "fr"), ("fra", "fr"), ("cmn", "zh"),
    ("zh_CN", "zh"), ("pt-BR", "pt"), ("yue", "yue"), ("haw", "haw"), ("jv", "jw"), ("jav", "jw"),
    ("nb", "no"), ("iw", "he"), ("fil", "tl"), ("Polish", "pl"), ("PL", "pl"),
])
def test_whisper_language(code, want):
    assert whisper_language(code) == want


@pytest.mark.parametrize("code", ["xx", "qaa", "tlh", "", "ku"])
def test_whisper_language_refuses_unknown_with_the_list(code):
    with pytest.raises(CodecError) as err:
        whisper_language(code)
    msg = str(err.value)
    assert "has no Whisper language token" in msg and "\n" not in msg
    assert " ".join(sorted(WHISPER_LANGUAGES)) in msg


def test_whisper_list_is_transformers_list():
    tok = pytest.importorskip("transformers.models.whisper.tokenization_whisper")
    assert WHISPER_LANGUAGES == tok.LANGUAGES
    assert set(textnorm._ISO_ALIASES.values()) <= set(WHISPER_LANGUAGES)
