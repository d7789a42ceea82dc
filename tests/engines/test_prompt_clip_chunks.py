"""The CLIP chunker on its own (no model): tokenizing runs in one call equals tokenizing each alone, and the
A1111 chunk rules at their edges (BREAK, comma backtrack at 20, embeddings never split, the counter)."""
from __future__ import annotations

import pytest

from sdcodex.engines.prompt_clip import ClipTokens, chunk_tokens, count_tokens
from sdcodex.models.tokenizers import clip_tokenizer

TOK = clip_tokenizer()


@pytest.mark.parametrize("runs", [["a ", "red", " fox"], ["(red", ")fox"], ["don", "'t"], ["café", "naïve"],
                                  ["東京", "😀x"], ["", "  ", "a"], ["x,", ",y"], ["it", "'s ok"], ["A  B", "\tc\n"],
                                  ["hello world!!", "??"], ["1", "2", "3.5"], ["BREAK", "break"]])
def test_runs_tokenized_together_equal_each_alone(runs):
    alone = [TOK([r], add_special_tokens=False)["input_ids"][0] for r in runs]
    assert ClipTokens(TOK).ids(runs) == alone


def test_chunk_edges():
    start, end, comma = 1, 2, 9
    words = [(list(range(100, 170)) + [comma] + list(range(200, 210)), 1.0)]  # comma 5 back from the edge
    chunks = chunk_tokens(words, start=start, end=end, comma=comma).chunks
    assert chunks[0].ids[71] == comma and chunks[0].ids[72] == end  # the 4 ids after the comma moved on
    assert chunks[1].ids[1:11] == list(range(200, 210)) and chunks[1].ids[11] == end
    far = [(list(range(100, 150)) + [comma] + list(range(200, 230)), 1.0)]  # comma 25 back: a hard cut
    chunks = chunk_tokens(far, start=start, end=end, comma=comma).chunks
    assert chunks[0].ids[75] == 223 and chunks[1].ids[1] == 224 and len(chunks) == 2
    broken = chunk_tokens([([5], 1.2), (None, -1.0), (None, -1.0), ([6], 1.0)], start=start, end=end, comma=comma)
    assert len(broken.chunks) == 3 and broken.chunks[1].ids == [start] + [end] * 76
    assert broken.chunks[0].weights[:3] == [1.0, 1.2, 1.0] and broken.token_count == 151
    emb = chunk_tokens([(list(range(100, 174)) + [500, 501], 1.3)], start=start, end=end, comma=comma,
                       groups={500: 2})
    assert emb.chunks[0].ids[75] == end and emb.chunks[1].ids[1:3] == [500, 501]
    assert emb.chunks[1].weights[1:3] == [1.3, 1.3]


def test_counter_grows_by_chunks():
    assert count_tokens("a (red:1.3) fox") == (3, 75)
    assert count_tokens(" ".join(["cat"] * 75)) == (75, 75)
    assert count_tokens(" ".join(["cat"] * 76)) == (76, 150)
    assert count_tokens("a BREAK b") == (76, 150)
    assert count_tokens("[a:" + " ".join(["cat"] * 80) + ":5] b", steps=10) == (81, 150)  # the longest text
    assert count_tokens("(a:1.2)", emphasis="None") == (7, 75)  # ( a : 1 . 2 ) as words
