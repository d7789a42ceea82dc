"""A1111 prompt syntax as pure text: attention weights and BREAK, prompt editing/alternation schedules, AND.

The three entry points are applied in A1111's order: ``split_and`` splits a prompt into composable
sub-prompts, ``prompt_schedules`` resolves editing ``[a:b:when]`` and alternation ``[a|b]`` of each
sub-prompt into per-step texts, and ``parse_attention`` turns one such text into weighted runs that a
text encoder tokenizes. Nothing here raises on any input text; malformed syntax stays text as it would
in A1111. See docs/prompts.md for the rules, including where we deliberately differ from A1111.
"""
from __future__ import annotations

import math
import re

__all__ = ["BREAK", "LORA_TAG", "lora_tag_names", "parse_attention", "prompt_schedules", "schedule_text_at",
           "split_and"]

#: A1111's `<lora:name[:weight[:unet_weight]]>` prompt tag (groups: name, weight, unet weight). The engines
#: strip and apply the tags; the server resolves their names when a job is submitted.
LORA_TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]*))?(?::([^:>]*))?>", re.IGNORECASE)


def lora_tag_names(prompt: str) -> list[str]:
    """The LoRA names a prompt's `<lora:...>` tags ask for, in order."""
    return [m.group(1).strip() for m in LORA_TAG.finditer(prompt or "")]

#: The item ``parse_attention`` emits where the prompt says ``BREAK``: the encoder starts a new chunk.
BREAK: tuple[str, float] = ("BREAK", -1.0)

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1

# One lexical token of the attention syntax, tried in this order at each position.
_MAX_DEPTH = 200  # open brackets beyond this are text, in attention and in scheduling
_ATTENTION_TOKEN = re.compile(
    r"""
      \\[()\[\]\\]              # an escaped bracket or backslash: the character itself
    | \\                        # any other backslash: dropped
    | [(\[]                     # an opening bracket
    | :\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)   # ':weight)' closing a round bracket (a number float() reads)
    | [)\]]                     # a closing bracket
    | [^\\()\[\]:]+             # a run of plain text
    | :                         # a colon that is not a weight
    """,
    re.X,
)
_BREAK_SPLIT = re.compile(r"\s*\bBREAK\b\s*", re.S)


def parse_attention(text: str) -> list[tuple[str, float]]:
    """Split a prompt into ``(text, weight)`` runs as A1111's attention syntax defines them.

    ``(x)`` multiplies by 1.1, ``(x:1.3)`` by 1.3, ``[x]`` divides by 1.1, nesting multiplies; brackets left
    open weight everything up to the end, stray closers are text; ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\\\`` are
    the literal characters and any other backslash is dropped; a ``:weight`` that is not a number stays text.
    An opener past ``_MAX_DEPTH`` open brackets is text (A1111 would weight it; no real prompt nests so deep,
    and it keeps the work linear in the prompt's length).
    The word ``BREAK`` becomes the item ``BREAK`` (``("BREAK", -1.0)``), also inside brackets. Adjacent runs
    of equal weight are merged; an empty prompt gives ``[("", 1.0)]``.
    """
    res: list[list] = []  # [text, weight, is_break]
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply_from(start: int, factor: float) -> None:
        for item in res[start:]:
            if not item[2]:
                item[1] *= factor

    # A1111 reads the weight with [.\d]+ and float(); a weight float() refuses ('1.2.3', '.') does not match
    # here, so its colon is text and the rest is read on (A1111 raises an error there)
    for m in _ATTENTION_TOKEN.finditer(text):
        token, weight = m.group(0), m.group(1)
        if token[0] == "\\":
            res.append([token[1:], 1.0, False])
        elif token in ("(", "[") and len(round_open) + len(square_open) >= _MAX_DEPTH:
            res.append([token, 1.0, False])  # deeper than any real prompt: text, so the work stays linear
        elif token == "(":
            round_open.append(len(res))
        elif token == "[":
            square_open.append(len(res))
        elif weight is not None and round_open:
            multiply_from(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            multiply_from(round_open.pop(), ROUND_MULTIPLIER)
        elif token == "]" and square_open:
            multiply_from(square_open.pop(), SQUARE_MULTIPLIER)
        elif "BREAK" not in token:
            res.append([token, 1.0, False])
        else:
            for i, part in enumerate(_BREAK_SPLIT.split(token)):
                if i:
                    res.append([BREAK[0], BREAK[1], True])
                res.append([part, 1.0, False])

    for start in round_open:
        multiply_from(start, ROUND_MULTIPLIER)
    for start in square_open:
        multiply_from(start, SQUARE_MULTIPLIER)

    if not res:
        return [("", 1.0)]
    merged: list[list] = [res[0]]
    for item in res[1:]:
        last = merged[-1]
        if not item[2] and not last[2] and item[1] == last[1]:
            last[0] += item[0]
        else:
            merged.append(item)
    return [(t, w) for t, w, _ in merged]


# --- prompt editing and alternation -------------------------------------------------------------------

_PLAIN_RUN = re.compile(r"[^\\\[\]():|]+")
# the tail of a scheduled item after its last ':' — a signed number (int, decimal or exponent) and ']'
_WHEN_TAIL = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?))\s*\]")


class _NotAConstruct(Exception):
    """A bracket that opens no valid construct; at the top level its opening character is plain text."""


class _Unparseable(Exception):
    """The prompt has no parse (a '|' outside alternation, a trailing backslash): it is used unscheduled."""


class _Scheduled:
    __slots__ = ("before", "after", "number", "when")

    def __init__(self, before: list | None, after: list, number: str):
        self.before, self.after, self.number, self.when = before, after, number, 0


class _Alternate:
    __slots__ = ("options",)

    def __init__(self, options: list[list]):
        self.options = options


def _parse_sequence(s: str, i: int, depth: int) -> tuple[list, int]:
    """Parse items from ``i`` until a character the caller must handle; depth 0 is the top level."""
    if depth > _MAX_DEPTH:
        raise _Unparseable
    nodes: list = []
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            if i + 1 >= n or s[i + 1] == "\n":
                raise _Unparseable
            nodes.append(s[i : i + 2])
            i += 2
        elif c in "([":
            try:
                parsed, i = (_parse_round if c == "(" else _parse_square)(s, i, depth + 1)
                nodes.extend(parsed)
            except _NotAConstruct:
                if depth:
                    raise
                nodes.append(c)
                i += 1
        elif c in ")]:":
            if depth:
                return nodes, i
            nodes.append(c)
            i += 1
        elif c == "|":
            if depth:
                return nodes, i
            raise _Unparseable
        else:
            m = _PLAIN_RUN.match(s, i)
            nodes.append(m.group(0))
            i = m.end()
    if depth:
        raise _NotAConstruct
    return nodes, i


def _parse_round(s: str, i: int, depth: int) -> tuple[list, int]:
    inner, j = _parse_sequence(s, i + 1, depth)
    if s[j] == ")":
        return ["(", *inner, ")"], j + 1
    if s[j] == ":":
        weight, k = _parse_sequence(s, j + 1, depth)
        if s[k] == ")":
            return ["(", *inner, ":", *weight, ")"], k + 1
    raise _NotAConstruct


def _parse_square(s: str, i: int, depth: int) -> tuple[list, int]:
    first, j = _parse_sequence(s, i + 1, depth)
    if s[j] == "]":
        return ["[", *first, "]"], j + 1
    if s[j] == "|":
        options = [first]
        while s[j] == "|":
            option, j = _parse_sequence(s, j + 1, depth)
            options.append(option)
        if s[j] == "]":
            return [_Alternate(options)], j + 1
        raise _NotAConstruct
    if s[j] == ":":
        tail = _WHEN_TAIL.match(s, j + 1)
        if tail:
            return [_Scheduled(None, first, tail.group(1))], tail.end()
        second, k = _parse_sequence(s, j + 1, depth)
        if s[k] == ":":
            tail = _WHEN_TAIL.match(s, k + 1)
            if tail:
                return [_Scheduled(first, second, tail.group(1))], tail.end()
    raise _NotAConstruct


def _walk(nodes: list):
    for node in nodes:
        if isinstance(node, _Scheduled):
            yield node
            yield from _walk(node.before or [])
            yield from _walk(node.after)
        elif isinstance(node, _Alternate):
            yield node
            for option in node.options:
                yield from _walk(option)


def _text_at(nodes: list, step: int, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Scheduled):
            _text_at((node.before or []) if step <= node.when else node.after, step, out)
        else:
            _text_at(node.options[(step - 1) % len(node.options)], step, out)


def prompt_schedules(prompt: str, steps: int, *, hires_steps: int | None = None) -> list[tuple[int, str]]:
    """Resolve prompt editing and alternation into ``(end_step, text)`` pairs, as A1111 does.

    ``[from:to:when]`` uses ``from`` up to step ``when`` and ``to`` after it; ``[to:when]`` adds, ``[from::when]``
    removes. ``when`` with a decimal point is a fraction of the steps (``0.25`` of 100 is 25), without one it is
    a step number; it is capped at ``steps``. ``[a|b|c]`` cycles one item per step. Boundary rule (A1111's):
    sampling step ``i`` (counted from 0) uses the text of the first pair with ``end_step >= i``, so the text of
    ``(16, ...)`` is used for steps 0..16. The last pair always ends at ``steps``. Texts keep the attention
    syntax. For a hires pass of ``hires_steps`` after ``steps`` base steps, integer ``when`` counts from the
    start of the base pass and a decimal ``1 + f`` is the fraction ``f`` of the hires pass (A1111's rule).
    A prompt without a parse (e.g. a ``|`` outside brackets) is used as it is: ``[(steps, prompt)]``.
    """
    if hires_steps is None:
        int_offset, frac_offset, total = 0, 0.0, steps
    else:
        int_offset, frac_offset, total = steps, 1.0, hires_steps
    if "[" not in prompt or (":" not in prompt and "|" not in prompt):
        return [(total, prompt)]  # no editing or alternation can be written without these
    try:
        nodes, _ = _parse_sequence(prompt, 0, 0)
    except _Unparseable:
        return [(total, prompt)]

    ends = {total}
    for node in _walk(nodes):
        if isinstance(node, _Alternate):
            ends.update(range(1, total + 1))
            continue
        value = float(node.number)
        value = (value - frac_offset) * total if "." in node.number else value - int_offset
        node.when = total if value >= total else (int(value) if math.isfinite(value) else -1)
        if node.when >= 1:
            ends.add(node.when)

    schedule = []
    for step in sorted(ends):
        out: list[str] = []
        _text_at(nodes, step, out)
        schedule.append((step, "".join(out)))
    return schedule


def schedule_text_at(schedule: list[tuple[int, str]], step: int) -> str:
    """The text that sampling step ``step`` (counted from 0) uses: the first pair with ``end_step >= step``.

    This is A1111's rule; a step past every ``end_step`` uses the first pair, as A1111 does.
    """
    for end_step, text in schedule:
        if step <= end_step:
            return text
    return schedule[0][1]


# --- AND ------------------------------------------------------------------------------------------------

_AND_SPLIT = re.compile(r"\bAND\b")
_TRAILING_WEIGHT = re.compile(r"\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+))\s*$")
_TRAILING_SPACE = re.compile(r"\s*$")


def split_and(prompt: str) -> list[tuple[str, float]]:
    """Split composable prompts ``a AND b :0.5`` into ``(text, weight)`` pairs, as A1111 does.

    The word ``AND`` (upper case) separates sub-prompts; a sub-prompt ending in ``:number`` gets that weight
    (default 1.0). Trailing whitespace is removed, leading whitespace kept. A prompt without ``AND`` gives one
    pair (with its weight if it ends in ``:number``).
    """
    parts = []
    for sub in _AND_SPLIT.split(prompt):
        m = _TRAILING_WEIGHT.search(sub)
        if m:
            parts.append((sub[: m.start()], float(m.group(1))))
        else:
            parts.append((sub[: _TRAILING_SPACE.search(sub).start()], 1.0))
    return parts
