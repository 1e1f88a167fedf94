"""Which modules an adapter_config.json targets, without trusting it with a regular expression.

PEFT reads a string `target_modules` (or `exclude_modules`) as a regular expression that must
match a module's whole name. A regular expression from a file can take forever (`(.+)+X`
backtracks exponentially) or not compile (`([`), so minitf never hands one to `re`. It reads the
small pattern syntax that PEFT's users and docs write instead, and matches it itself in time
proportional to (pattern length × name length):

    abc_1   a literal name part (letters, digits, _ and -)
    \\.      a literal dot
    .       any one character              .*   any run of characters (also .+)
    \\d+     one or more digits (also [0-9]+)
    (a|b)   one of these literal alternatives, e.g. (query|value) or (0|1|2); (?:...) too
    ^ $     at the very start / end (the whole name must match anyway)

e.g. `.*encoder\\.layer\\.(0|1)\\.attention\\.self\\.(query|value)` or `.*(query|value)$`.
Anything else (nested groups, `+` or `*` after a group, character classes, ...) is refused
with a MinitfError naming the file. Literal names (PEFT's list form) never go through here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from minitf.errors import MinitfError

MAX_PATTERN = 300  # characters; PEFT's are well under 200
WORD = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@dataclass(frozen=True)
class Token:
    kind: str                        # "literal", "one", "any", "some", "digits", "either"
    texts: tuple[str, ...] = ()      # literal: (text,); either: the alternatives


@functools.lru_cache(maxsize=64)
def compile_targets(pattern: str, where: str) -> tuple[Token, ...]:
    """The tokens of `pattern`, or a MinitfError (naming `where`) for anything outside the
    syntax above."""
    if len(pattern) > MAX_PATTERN:
        raise MinitfError(f"{where}: the pattern is {len(pattern)} characters long; at most "
                          f"{MAX_PATTERN}")
    body = pattern.removeprefix("^")
    body = body[:-1] if body.endswith("$") and not body.endswith("\\$") else body
    tokens: list[Token] = []
    i = 0
    while i < len(body):
        token, i = _next_token(body, i, pattern, where)
        tokens.append(token)
    return tuple(tokens)


def _next_token(body: str, i: int, pattern: str, where: str) -> tuple[Token, int]:
    two, three = body[i:i + 2], body[i:i + 3]
    if body[i] in WORD:
        j = i
        while j < len(body) and body[j] in WORD and body[j + 1:j + 2] not in ("*", "+", "?"):
            j += 1
        if j > i:
            return Token("literal", (body[i:j],)), j
    if two in (".*", ".+"):
        return Token("any" if two == ".*" else "some"), i + 2
    if three == "\\d+" or body[i:i + 6] == "[0-9]+":
        return Token("digits"), i + (3 if three == "\\d+" else 6)
    if two == "\\.":
        return Token("literal", (".",)), i + 2
    if body[i] == "." and body[i + 1:i + 2] not in ("*", "+", "?", "{"):
        return Token("one"), i + 1
    if body[i] == "(":
        start = i + (3 if three == "(?:" else 1)
        end = body.find(")", start)
        options = body[start:end].split("|") if end > 0 else []
        if options and all(o and set(o.replace("\\.", "")) <= WORD for o in options) \
                and body[end + 1:end + 2] not in ("*", "+", "?", "{"):
            return Token("either", tuple(o.replace("\\.", ".") for o in options)), end + 1
    raise MinitfError(
        f"{where}: the pattern {pattern[:200]!r} is not one minitf reads (at {body[i:i + 20]!r}); "
        "write target_modules as a list of module names (e.g. [\"query\", \"value\"]) or a "
        "pattern of literal parts, \\., .*, \\d+ and (a|b) groups (see "
        "minitf/tasks/peft_targets.py)")


def matches(tokens: tuple[Token, ...], name: str) -> bool:
    """Whether the whole of `name` matches the pattern's tokens: a table of (token, position)
    filled from the end, so no backtracking, len(tokens) × (len(name) + 1) steps."""
    n = len(name)
    after = [False] * n + [True]  # the empty rest of the pattern matches the end of the name
    for token in reversed(tokens):
        here = [False] * (n + 1)
        for pos in range(n, -1, -1):
            if token.kind in ("literal", "either"):
                here[pos] = any(name.startswith(text, pos) and after[pos + len(text)]
                                for text in token.texts)
            elif token.kind == "one":
                here[pos] = pos < n and after[pos + 1]
            elif token.kind == "digits":  # one digit, then the rest or more digits
                here[pos] = pos < n and name[pos].isdigit() and (after[pos + 1] or here[pos + 1])
            elif token.kind == "any":
                here[pos] = after[pos] or (pos < n and here[pos + 1])
            else:  # some: one character, then any
                here[pos] = pos < n and (after[pos + 1] or here[pos + 1])
        after = here
    return after[0]


def contains_module(name: str, module: str) -> bool:
    """PEFT's modules_to_save rule as a literal test: `module` is a run of whole dotted parts
    of `name` (classifier matches classifier and bert.classifier.dense, not my_classifier)."""
    return f".{module}." in f".{name}."
