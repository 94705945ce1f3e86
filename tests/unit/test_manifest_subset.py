"""manifest_subset --first N: the first N rows of each language, in file order (FocalCodec-S's
test lists: the first 2000 rows per language)."""

import csv

from speechbrain_codec.bin.manifest_subset import main


def test_first_n_per_language_keeps_order(tmp_path, capsys):
    src = tmp_path / "m.csv"
    rows = [("a", "zh", "x"), ("b", "en", "y"), ("c", "zh", "z"), ("d", "zh", ""), ("e", "en", "q"), ("f", "en", "r")]
    src.write_text("ID,lang,text\n" + "".join(f"{i},{lang},{t}\n" for i, lang, t in rows), encoding="utf-8")
    assert main([str(src), str(tmp_path / "o.csv"), "--first", "2"]) == 0
    assert capsys.readouterr().out.strip() == "4"
    with open(tmp_path / "o.csv", newline="", encoding="utf-8") as f:
        assert [r["ID"] for r in csv.DictReader(f)] == ["a", "b", "c", "e"]
    assert main([str(src), str(tmp_path / "o.csv"), "--first", "2", "--with_text", "--lang", "zh"]) == 0
    assert capsys.readouterr().out.strip() == "2"
    assert main([str(src), str(tmp_path / "o.csv"), "--first", "0"]) == 1
    assert "--first must be at least 1" in capsys.readouterr().err
