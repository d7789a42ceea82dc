"""A1111 prompt syntax: attention weights, BREAK, editing/alternation schedules and AND, as a table of prompts.

Expected values are A1111's documented results (its docstring examples and wiki) and the behaviour its
rules imply; weights are written as the products A1111 computes, in the order brackets close.
"""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sdcodex.core.prompt_syntax import BREAK, parse_attention, prompt_schedules, schedule_text_at, split_and

UP, DOWN = 1.1, 1 / 1.1

ATTENTION = [
    # A1111's documented examples
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", UP), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", UP)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", UP)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.3 * UP * UP), (" ", UP), ("on", 1.0), (" a ", UP), ("hill", 0.5 * UP),
      (", sun, ", UP), ("sky", UP * UP * UP * UP), (".", UP)]),
    # nesting, square brackets, explicit weights
    ("", [("", 1.0)]),
    ("((a))", [("a", UP * UP)]),
    ("[a]", [("a", DOWN)]),
    ("[[a]]", [("a", DOWN * DOWN)]),
    ("(a [b] c)", [("a ", UP), ("b", DOWN * UP), (" c", UP)]),
    ("(a:1.3)", [("a", 1.3)]),
    ("(a : 1.3 )", [("a ", 1.3)]),
    ("(a:+.5)", [("a", 0.5)]),
    ("(a:-1)", [("a", -1.0)]),
    ("a (b:0)", [("a ", 1.0), ("b", 0.0)]),
    ("((a:1.5):1.2)", [("a", 1.5 * 1.2)]),
    ("(a:1.5) (b:1.5)", [("a", 1.5), (" ", 1.0), ("b", 1.5)]),
    ("(a)(b:1.1)", [("ab", UP)]),
    # unbalanced and stray brackets, weights that are not numbers
    ("[a", [("a", DOWN)]),
    ("((a)", [("a", UP * UP)]),
    ("a) b] c", [("a) b] c", 1.0)]),
    ("a:1.3)", [("a:1.3)", 1.0)]),
    ("(a:abc)", [("a:abc", UP)]),
    ("(a:1.2", [("a:1.2", UP)]),
    ("(a:1.2.3)", [("a:1.2.3", UP)]),
    ("(a:.)", [("a:.", UP)]),
    # escapes
    ("\\\\", [("\\", 1.0)]),
    ("a\\b", [("ab", 1.0)]),
    ("\\(a:1.2\\)", [("(a:1.2)", 1.0)]),
    ("(\\(a\\))", [("(a)", UP)]),
    # BREAK
    ("a BREAK b", [("a", 1.0), BREAK, ("b", 1.0)]),
    ("a\nBREAK\n(b)", [("a", 1.0), BREAK, ("", 1.0), ("b", UP)]),
    ("BREAK", [("", 1.0), BREAK, ("", 1.0)]),
    ("BREAKfast break", [("BREAKfast break", 1.0)]),
    ("(a BREAK b:1.5)", [("a", 1.5), BREAK, ("b", 1.5)]),
    # unicode and newlines are plain text
    ("café (日本:1.2) 🙂\n", [("café ", 1.0), ("日本", 1.2), (" 🙂\n", 1.0)]),
]


@pytest.mark.parametrize("prompt,expected", ATTENTION, ids=[repr(p) for p, _ in ATTENTION])
def test_parse_attention(prompt, expected):
    assert parse_attention(prompt) == expected


SCHEDULES = [
    # A1111's documented examples (10 steps)
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", [(s, "a" if s % 2 else "(b:1.1)") for s in range(1, 11)]),
    ("[fe|]male", [(s, "female" if s % 2 else "male") for s in range(1, 11)]),
    ("[fe|||]male", [(s, "female" if s % 4 == 1 else "male") for s in range(1, 11)]),
    # more
    ("", [(10, "")]),
    ("[a::3]", [(3, "a"), (10, "")]),
    ("[a:b:0.25]", [(2, "a"), (10, "b")]),
    ("[a:b:1.0]", [(10, "a")]),
    ("[a:b:20]", [(10, "a")]),
    ("[a:b:0]", [(10, "b")]),
    ("[a:b:-3]", [(10, "b")]),
    ("[a:b:1e999]", [(10, "a")]),
    ("[a:b]", [(10, "[a:b]")]),
    ("a | b [c:2]", [(10, "a | b [c:2]")]),
    ("[a:b:2] trailing\\", [(10, "[a:b:2] trailing\\")]),
    ("\\[a:b:3\\]", [(10, "\\[a:b:3\\]")]),
    ("(x [a:b:2]:1.2)", [(2, "(x a:1.2)"), (10, "(x b:1.2)")]),
    ("(x:[a:b:2]:y)", [(2, "(x:a:y)"), (10, "(x:b:y)")]),
    ("[[a|b]:c:4]", [(1, "a"), (2, "b"), (3, "a"), (4, "b")] + [(s, "c") for s in range(5, 11)]),
    ("[a:[b|c]:8]", [(s, "a") for s in range(1, 9)] + [(9, "b"), (10, "c")]),
    ("[a BREAK b:c:5] AND d", [(5, "a BREAK b AND d"), (10, "c AND d")]),
]


@pytest.mark.parametrize("prompt,expected", SCHEDULES, ids=[repr(p) for p, _ in SCHEDULES])
def test_prompt_schedules(prompt, expected):
    assert prompt_schedules(prompt, 10) == expected


@pytest.mark.parametrize("prompt,expected", [
    ("a [b:.5] c", [(10, "a b c")]),          # A1111 documented: a fraction < 1 is over before the hires pass
    ("a [b:1.5] c", [(5, "a  c"), (10, "a b c")]),  # A1111 documented: 1 + f is the fraction f of the hires pass
    ("a [b:15] c", [(5, "a  c"), (10, "a b c")]),   # an integer counts from the start of the base pass
    ("a [b:4] c", [(10, "a b c")]),
])
def test_hires_pass_schedules(prompt, expected):
    assert prompt_schedules(prompt, 10, hires_steps=10) == expected


def test_wiki_example_switches_after_step_16_of_100():
    schedule = prompt_schedules("a [fantasy:cyberpunk:16] landscape", 100)
    assert schedule == [(16, "a fantasy landscape"), (100, "a cyberpunk landscape")]
    texts = [schedule_text_at(schedule, i) for i in range(100)]
    # A1111's rule: step i (from 0) uses the first pair with end_step >= i -> steps 0..16 are 'fantasy'
    assert texts[:17] == ["a fantasy landscape"] * 17 and texts[17:] == ["a cyberpunk landscape"] * 83


def test_alternation_boundary_follows_a1111():
    schedule = prompt_schedules("[cow|horse] in a field", 4)
    assert [schedule_text_at(schedule, i) for i in range(4)] == [
        "cow in a field", "cow in a field", "horse in a field", "cow in a field"]
    assert schedule_text_at(schedule, 9) == "cow in a field"  # past the end: the first pair, as A1111


@pytest.mark.parametrize("prompt,expected", [
    ("a cat AND a dog :0.5", [("a cat", 1.0), (" a dog", 0.5)]),
    ("a cat", [("a cat", 1.0)]),
    ("x:1.2", [("x", 1.2)]),
    ("(a:1.2) AND b: .5 ", [("(a:1.2)", 1.0), (" b", 0.5)]),
    ("a AND b:-2 AND c:1.", [("a", 1.0), (" b", -2.0), (" c", 1.0)]),
    ("ANDROID and android", [("ANDROID and android", 1.0)]),
    ("a AND", [("a", 1.0), ("", 1.0)]),
    ("a:1.2.3", [("a:1.2.3", 1.0)]),
    ("", [("", 1.0)]),
])
def test_split_and(prompt, expected):
    assert split_and(prompt) == expected


SYNTAX = st.text(alphabet=st.sampled_from(list("ab :|.\\()[]0123456789-+eBREAKAND\n é")) | st.characters(),
                 max_size=60)


@settings(max_examples=400, deadline=None)
@given(SYNTAX, st.integers(min_value=0, max_value=40))
def test_never_raises_on_arbitrary_text(text, steps):
    weighted = parse_attention(text)
    assert weighted and all(isinstance(t, str) and isinstance(w, float) for t, w in weighted)
    for sub, weight in split_and(text):
        assert isinstance(weight, float)
        schedule = prompt_schedules(sub, steps)
        assert schedule[-1][0] == steps and [e for e, _ in schedule] == sorted({e for e, _ in schedule})
        for _, step_text in schedule:
            parse_attention(step_text)
        prompt_schedules(sub, steps, hires_steps=steps + 1)


@given(st.text(alphabet=st.characters(blacklist_characters="\\()[]:|"), max_size=40))
def test_text_without_syntax_is_unchanged(text):
    assert prompt_schedules(text, 7) == [(7, text)]
    if "BREAK" not in text and text:
        assert parse_attention(text) == [(text, 1.0)]


def test_deep_nesting_does_not_raise():
    prompt = "[" * 5000 + "a:b:3" + "]" * 5000
    assert prompt_schedules(prompt, 10) == [(10, prompt)]
    # past 200 open brackets an opener is text (keeps parsing linear in the prompt's length)
    assert parse_attention("(" * 5000 + "a") == [("(" * 4800 + "a", _repeat(UP, 200))]
    assert parse_attention("[a:" * 3) == [("a:", _repeat(DOWN, n)) for n in (1, 2, 3)]


def _repeat(factor, times):
    weight = 1.0
    for _ in range(times):
        weight *= factor
    return weight
