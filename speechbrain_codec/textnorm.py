"""Text normalisation per language, and language codes for Whisper.

A recipe normalises its transcripts once, in the dataset's preparation script (the ``text``
column; ``raw_text`` keeps the original), with a *named* normaliser that the recipe's hparams
select (``text_normaliser: latin``). Three come with the toolkit:

* ``latin`` — for alphabetic scripts written with spaces between words (Latin, Cyrillic, Greek,
  ...): Unicode NFC (a decomposed ``e`` + combining acute becomes ``é``; diacritics are *kept*),
  lower case (:meth:`str.lower`, so ``ß`` stays ``ß``), punctuation and symbols replaced by
  spaces (an apostrophe between two letters stays: ``l'homme``, ``don't``), invisible format
  characters dropped, spaces collapsed.
* ``cjk`` — for Chinese / Japanese: NFKC (full-width Latin letters and digits become ASCII),
  lower case, every punctuation mark (full-width ``，。、「」！？`` included) and symbol removed,
  every Han / kana character its own token (CER), runs of other letters or digits kept as words:
  ``"我们 OK，好吗？"`` -> ``"我 们 ok 好 吗"``.
* ``none`` — spaces collapsed, nothing else.

:func:`register_normaliser` adds one for a language (or replaces the default): every lookup by
that language code then returns it. A name may also be ``"package.module:function"``, imported
on first use, so a recipe can point its hparams at its own function.

Whisper losses prompt with ``<|lang|>``: :func:`whisper_language` maps an ISO 639-1, 639-2/B or
639-3 code (``pl``, ``pol``, ``cmn``, ``fre``) to Whisper's own code and refuses anything else
with the list of the 100 languages Whisper knows.

Example
-------
>>> normalise("Ça va? L'été, très-bien!", "fr")
"ça va l'été très bien"
>>> normalise("甚至出现，交易", "zh")
'甚 至 出 现 交 易'
>>> whisper_language("pol")
'pl'
"""

from __future__ import annotations

import importlib
import re
import unicodedata
from typing import Callable

from .utils import CodecError

__all__ = [
    "normalise_latin",
    "normalise_cjk",
    "normalise_none",
    "register_normaliser",
    "get_normaliser",
    "normaliser_name",
    "normalise",
    "WHISPER_LANGUAGES",
    "whisper_language",
    "is_cjk_char",
]

Normaliser = Callable[[str], str]

_APOSTROPHES = "'\u2019\u02bc"  # ASCII, right single quotation mark, modifier letter apostrophe


def _strip(text: str, keep_apostrophes: bool) -> str:
    """Punctuation and symbols -> space; format characters (zero-width ...) dropped."""
    out = []
    for i, c in enumerate(text):
        cat = unicodedata.category(c)
        if keep_apostrophes and c in _APOSTROPHES:
            prev = text[i - 1] if i else ""
            nxt = text[i + 1] if i + 1 < len(text) else ""
            out.append("'" if prev.isalnum() and nxt.isalnum() else " ")
        elif cat[0] in "PS" or cat in ("Cc", "Zs", "Zl", "Zp"):
            out.append(" ")
        elif cat in ("Cf", "Co", "Cn", "Cs"):
            continue
        else:
            out.append(c)
    return "".join(out)


def normalise_latin(text: str) -> str:
    """Lower case, punctuation stripped, diacritics kept (NFC); for scripts with spaces.

    Example
    -------
    >>> normalise_latin("Zoe\\u0308   KRÓL-Żółć, „cytat”… don’t!")
    "zoë król żółć cytat don't"
    """
    text = unicodedata.normalize("NFC", text).lower()
    return " ".join(_strip(text, keep_apostrophes=True).split())


def is_cjk_char(c: str) -> bool:
    """Han ideographs (and their extensions / compatibility forms), hiragana, katakana."""
    o = ord(c)
    return (
        0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0x20000 <= o <= 0x323AF
        or 0xF900 <= o <= 0xFAFF or 0x3040 <= o <= 0x30FF or 0x31F0 <= o <= 0x31FF
        or o == 0x3005 or o == 0x3007  # 々 (iteration mark), 〇
    )


def normalise_cjk(text: str) -> str:
    """One token per Han / kana character; full-width punctuation removed (CER).

    Example
    -------
    >>> normalise_cjk("「你好」，ＡＢＣ１２３！ 世界。")
    '你 好 abc123 世 界'
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = _strip(text, keep_apostrophes=False)
    tokens: list[str] = []
    word = ""
    for c in text:
        if is_cjk_char(c) or c.isspace():
            if word:
                tokens.append(word)
                word = ""
            if not c.isspace():
                tokens.append(c)
        else:
            word += c
    if word:
        tokens.append(word)
    return " ".join(tokens)


def normalise_none(text: str) -> str:
    """Spaces collapsed, nothing else (a corpus already normalised)."""
    return " ".join(text.split())


_BY_NAME: dict[str, Normaliser] = {"latin": normalise_latin, "cjk": normalise_cjk, "none": normalise_none}
#: default normaliser name per language (any other language: ``latin``)
_LANG_DEFAULT = {code: "cjk" for code in ("zh", "zho", "chi", "cmn", "yue", "wuu", "nan", "hak", "ja", "jpn", "lzh")}
_BY_LANG: dict[str, Normaliser] = {}


def register_normaliser(lang: str, fn: Normaliser, name: str | None = None) -> None:
    """Make ``fn`` the normaliser of language ``lang`` (and, with ``name``, selectable by name).

    Example
    -------
    >>> register_normaliser("qaa", str.upper, name="shout")  # qaa-qtz: ISO 639's local-use codes
    >>> normalise("abc", "qaa"), get_normaliser("shout")("hi")
    ('ABC', 'HI')
    """
    if not callable(fn):
        raise CodecError(f"register_normaliser({lang!r}): {fn!r} is not callable")
    _BY_LANG[lang.lower()] = fn
    if name is not None:
        _BY_NAME[name] = fn


def normaliser_name(lang: str) -> str:
    """The default normaliser's name for ``lang`` (``cjk`` for Chinese / Japanese, else ``latin``)."""
    return _LANG_DEFAULT.get(lang.lower().split("-")[0].split("_")[0], "latin")


def get_normaliser(name: str | None = None, lang: str | None = None) -> Normaliser:
    """The normaliser called ``name`` (``latin``, ``cjk``, ``none``, a registered name, or
    ``"package.module:function"``); without a name, the one registered for ``lang`` or the
    language's default.

    Raises
    ------
    CodecError
        An unknown name (with the known ones), or a ``module:function`` that does not import.
    """
    if name:
        if name in _BY_NAME:
            return _BY_NAME[name]
        if ":" in name:
            mod, _, attr = name.partition(":")
            try:
                fn = getattr(importlib.import_module(mod), attr)
            except (ImportError, AttributeError) as err:
                raise CodecError(f"text normaliser {name!r}: cannot import it ({err}); check the module path") from None
            if not callable(fn):
                raise CodecError(f"text normaliser {name!r} is not a function")
            return fn
        raise CodecError(f"unknown text normaliser {name!r}: use one of {sorted(_BY_NAME)} or 'package.module:function'")
    if lang is None:
        return normalise_latin
    base = lang.lower().split("-")[0].split("_")[0]
    return _BY_LANG.get(lang.lower()) or _BY_LANG.get(base) or _BY_NAME[normaliser_name(base)]


def normalise(text: str, lang: str | None = None, name: str | None = None) -> str:
    """Normalise ``text`` with :func:`get_normaliser` ``(name, lang)``."""
    return get_normaliser(name, lang)(text)


# --------------------------------------------------------------------------------------------
# Whisper language tokens
# --------------------------------------------------------------------------------------------
#: Whisper's 100 language codes and names (the multilingual tokenizer's ``<|xx|>`` tokens; the
#: same list as transformers' ``tokenization_whisper.LANGUAGES``)
WHISPER_LANGUAGES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan",
    "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi",
    "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay",
    "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin",
    "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian",
    "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian", "kn": "kannada",
    "et": "estonian", "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian", "sw": "swahili",
    "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala", "km": "khmer", "sn": "shona",
    "yo": "yoruba", "so": "somali", "af": "afrikaans", "oc": "occitan", "ka": "georgian", "be": "belarusian",
    "tg": "tajik", "sd": "sindhi", "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao",
    "uz": "uzbek", "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk",
    "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan", "tl": "tagalog",
    "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian", "ln": "lingala", "ha": "hausa",
    "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}

# ISO 639-3 (and 639-2/B, and a few 639-1 spellings Whisper writes otherwise) -> Whisper's code
_ISO_ALIASES = {
    "eng": "en", "zho": "zh", "chi": "zh", "cmn": "zh", "deu": "de", "ger": "de", "spa": "es", "rus": "ru",
    "kor": "ko", "fra": "fr", "fre": "fr", "jpn": "ja", "por": "pt", "tur": "tr", "pol": "pl", "cat": "ca",
    "nld": "nl", "dut": "nl", "ara": "ar", "arb": "ar", "swe": "sv", "ita": "it", "ind": "id", "in": "id",
    "hin": "hi", "fin": "fi", "vie": "vi", "heb": "he", "iw": "he", "ukr": "uk", "ell": "el", "gre": "el",
    "msa": "ms", "may": "ms", "zsm": "ms", "ces": "cs", "cze": "cs", "ron": "ro", "rum": "ro", "mol": "ro",
    "dan": "da", "hun": "hu", "tam": "ta", "nor": "no", "nob": "no", "nb": "no", "tha": "th", "urd": "ur",
    "hrv": "hr", "bul": "bg", "lit": "lt", "lat": "la", "mri": "mi", "mao": "mi", "mal": "ml", "cym": "cy",
    "wel": "cy", "slk": "sk", "slo": "sk", "tel": "te", "fas": "fa", "per": "fa", "pes": "fa", "lav": "lv",
    "lvs": "lv", "ben": "bn", "srp": "sr", "aze": "az", "azj": "az", "slv": "sl", "kan": "kn", "est": "et",
    "ekk": "et", "mkd": "mk", "mac": "mk", "bre": "br", "eus": "eu", "baq": "eu", "isl": "is", "ice": "is",
    "hye": "hy", "arm": "hy", "nep": "ne", "npi": "ne", "mon": "mn", "khk": "mn", "bos": "bs", "kaz": "kk",
    "sqi": "sq", "alb": "sq", "als": "sq", "swa": "sw", "swh": "sw", "glg": "gl", "mar": "mr", "pan": "pa",
    "sin": "si", "khm": "km", "sna": "sn", "yor": "yo", "som": "so", "afr": "af", "oci": "oc", "kat": "ka",
    "geo": "ka", "bel": "be", "tgk": "tg", "snd": "sd", "guj": "gu", "amh": "am", "yid": "yi", "lao": "lo",
    "uzb": "uz", "uzn": "uz", "fao": "fo", "hat": "ht", "pus": "ps", "pbt": "ps", "tuk": "tk", "nno": "nn",
    "mlt": "mt", "san": "sa", "ltz": "lb", "mya": "my", "bur": "my", "bod": "bo", "tib": "bo", "tgl": "tl",
    "fil": "tl", "mlg": "mg", "plt": "mg", "asm": "as", "tat": "tt", "lin": "ln", "hau": "ha", "bak": "ba",
    "jav": "jw", "jv": "jw", "sun": "su",
}


def whisper_language(code: str) -> str:
    """Whisper's language code for an ISO 639-1 / 639-2 / 639-3 code (a region suffix such as
    ``pt-BR`` or ``zh_CN`` is ignored), or Whisper's English name of the language.

    Raises
    ------
    CodecError
        A language Whisper does not know, with the list of those it does.

    Example
    -------
    >>> whisper_language("pt-BR"), whisper_language("cmn"), whisper_language("Polish")
    ('pt', 'zh', 'pl')
    """
    key = re.split(r"[-_]", code.strip().lower())[0]
    if key in WHISPER_LANGUAGES:
        return key
    if key in _ISO_ALIASES:
        return _ISO_ALIASES[key]
    by_name = {name: c for c, name in WHISPER_LANGUAGES.items()}
    if code.strip().lower() in by_name:
        return by_name[code.strip().lower()]
    raise CodecError(
        f"language {code!r} has no Whisper language token; Whisper knows: {' '.join(sorted(WHISPER_LANGUAGES))}"
        " (give an ISO 639-1/639-3 code of one of them, or train without the Whisper losses)"
    )
