"""Prompt styles as A1111's styles.csv: the expansion rule, its inverse (styles read back from a prompt), the CSV
reader and writer (quoting, BOM, the old `text` column, comment rows) and the store's edits."""
from __future__ import annotations

import pytest

from sdcodex.core.errors import ValidationError
from sdcodex.core.styles import (Style, StyleSet, StyleStore, apply_styles, extract_styles, merge, pick, read_csv,
                                 write_csv)

MOODY = Style("moody", "dark, moody lighting", "bright")
FRAME = Style("frame", "a photo of {prompt}, 35mm", "lowres")
EMPTY = Style("nothing")

#: (style text, prompt) -> merged, A1111's merge_prompts rule
MERGES = [
    ("dark, moody", "a cat", "a cat, dark, moody"),          # no placeholder: appended with ", "
    ("  dark  ", "  a cat ", "a cat, dark"),                  # both stripped
    ("dark", "", "dark"),                                     # an empty prompt: the style alone
    ("", "a cat", "a cat"),                                   # an empty style: the prompt alone
    ("", "", ""),
    ("a photo of {prompt}, 35mm", "a cat", "a photo of a cat, 35mm"),  # placeholder: replaced, nothing stripped
    ("{prompt}", " a cat ", " a cat "),
    ("{prompt} and {prompt}", "x", "x and x"),                # every placeholder
    ("art of {prompt}", "", "art of "),
]


@pytest.mark.parametrize("style, prompt, expected", MERGES)
def test_merge_table(style, prompt, expected):
    assert merge(style, prompt) == expected


#: (styles, prompt, negative) -> (prompt, negative) after applying them in order
APPLIES = [
    ([MOODY], "a cat", "blurry", ("a cat, dark, moody lighting", "blurry, bright")),
    ([FRAME], "a cat", "", ("a photo of a cat, 35mm", "lowres")),
    ([MOODY, FRAME], "a cat", "blurry", ("a photo of a cat, dark, moody lighting, 35mm", "blurry, bright, lowres")),
    ([FRAME, MOODY], "a cat", "", ("a photo of a cat, 35mm, dark, moody lighting", "lowres, bright")),
    ([EMPTY], "a cat", "blurry", ("a cat", "blurry")),
    ([], "a cat", "blurry", ("a cat", "blurry")),
]


@pytest.mark.parametrize("styles, prompt, negative, expected", APPLIES)
def test_apply_table_and_extract_back(styles, prompt, negative, expected):
    assert apply_styles(prompt, negative, styles) == expected
    found, p, n = extract_styles(*expected, [EMPTY, FRAME, MOODY])
    real = [s.name for s in styles if s is not EMPTY]
    assert found == real  # the order to apply them in; an empty style is never "found"
    if real:
        assert (p.strip(), n.strip()) == (prompt, negative)


def test_extract_needs_both_prompts_to_match():
    found, p, n = extract_styles("a cat, dark, moody lighting", "blurry", [MOODY])  # negative lacks "bright"
    assert found == [] and (p, n) == ("a cat, dark, moody lighting", "blurry")
    found, p, n = extract_styles("a dog", "", [FRAME])
    assert found == [] and p == "a dog"
    # as A1111: the prompts are stripped before matching, so "neg, {prompt}" over an empty negative ("neg, ")
    # is not found again
    wrap = Style("wrap", "{prompt}", "neg, {prompt}")
    assert extract_styles(*apply_styles("a cat", "", [wrap]), [wrap])[0] == []
    assert extract_styles(*apply_styles("a cat", "x", [wrap]), [wrap]) == (["wrap"], "a cat", "x")


def test_pick_names_the_index_of_an_unknown_style():
    known = {s.name: s for s in (MOODY, FRAME)}
    assert pick(["frame", "moody"], known) == [FRAME, MOODY]
    with pytest.raises(ValidationError) as err:
        pick(["moody", "nope"], known)
    assert err.value.field == "styles[1]" and err.value.allowed == ["frame", "moody"]
    assert "nope" in str(err.value)


def test_csv_reader_a1111_files():
    text = ('\ufeffname,prompt,negative_prompt\r\n'
            'plain,"a, b","c"\r\n'
            '"quoted ""name""","say ""hi"", {prompt}",\r\n'
            '"multi","line one\nline two",neg\r\n'
            '# comment,ignored,\r\n'
            ',no name,\r\n'
            'plain,replaced,x\r\n')
    styles = {s.name: s for s in read_csv(text)}
    assert list(styles) == ["plain", 'quoted "name"', "multi"]
    assert styles["plain"] == Style("plain", "replaced", "x")  # a later row of the same name wins
    assert styles['quoted "name"'] == Style('quoted "name"', 'say "hi", {prompt}', "")
    assert styles["multi"].prompt == "line one\nline two"
    # the first styles.csv format: name, text
    assert read_csv("name, text\nold, from text column\n") == [Style("old", "from text column", "")]


def test_csv_writer_round_trips_with_a1111_quoting():
    styles = [Style("a", "x, y", 'say "no"'), Style("b", "line\nbreak", ""), Style("c", "{prompt} art", "")]
    text = write_csv(styles)
    assert text.splitlines()[0] == "name,prompt,negative_prompt"
    assert '"x, y","say ""no"""' in text and "c,{prompt} art," in text  # quoted only where needed
    assert read_csv(text) == styles


def test_store_save_rename_delete_and_reload(tmp_path):
    path = tmp_path / "data" / "styles.csv"
    store = StyleStore(path)
    assert store.all() == {}  # no file yet: no styles
    store.save(MOODY)
    store.save(FRAME)
    store.save(Style("moody", "darker", ""))  # replaced in place
    assert list(store.all()) == ["moody", "frame"] and store.all()["moody"].prompt == "darker"
    store.save(Style("gloomy", "darker", ""), old_name="moody")  # renamed, same place
    assert list(store.all()) == ["gloomy", "frame"]
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM, as A1111 writes it
    path.write_text("name,prompt,negative_prompt\nhand,edited,\n", encoding="utf-8")  # edited outside: re-read
    assert list(store.all()) == ["hand"]
    with pytest.raises(ValidationError) as err:
        store.delete("gloomy")
    assert err.value.field == "name"
    store.delete("hand")
    assert store.all() == {}
    with pytest.raises(ValidationError):
        store.save(Style("  ", "x"))


def test_style_set_from_dicts():
    fixed = StyleSet([MOODY.to_dict(), FRAME])
    assert fixed.names() == ["moody", "frame"] and fixed.all()["moody"] == MOODY
    with pytest.raises(ValidationError) as err:
        fixed.pick(["frame", "x"])
    assert err.value.field == "styles[1]"
