"""Strategies shared by the property tests: hostile text, valid references built from
Docker's grammar, JSON values, and a small TOML writer for generated config documents."""

from __future__ import annotations

import re

from hypothesis import strategies as st

from lab import tomlw

SHELL_META = ";|&$()`<>*?[]{}!'\"\\"
WHITESPACE = " \t\n\r\x0b\x0c\x85\u00a0\u2028"
# Every character that matters to a shell, a path or a terminal, plus a few that a
# reference may contain, so that hostile strings are often *almost* valid.
HOSTILE_ALPHABET = SHELL_META + WHITESPACE + "\x00\x1b\x7f-/:.@_~#%^+=,aZ09é\u2215\uff0e"
INJECTIONS = [
    ";id",
    "$(id)",
    "`id`",
    "|id",
    "&&id",
    "&",
    ">x",
    "<x",
    "?",
    "!",
    "{a,b}",
    "$IFS",
    "~",
    ";touch /tmp/imgsync-pwned",
    "$(touch /tmp/imgsync-pwned)",
    "`touch /tmp/imgsync-pwned`",
    " && touch /tmp/imgsync-pwned",
    "|touch /tmp/imgsync-pwned",
    "\ntouch /tmp/imgsync-pwned",
    "${IFS}",
    "\x00",
    " --help",
    "-oProxyCommand=x",
    "../../..",
    "\x1b[2J",
    "'",
    '"',
    "\\",
    "*",
    "\t",
    "\u00a0",
]

# --- valid references, from github.com/distribution/reference's grammar ------------------

_LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_DOMAIN_CHARS = _LOWER_ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TAG_FIRST = _DOMAIN_CHARS + "_"


def text_over(alphabet: str, min_size: int = 0, max_size: int = 64) -> st.SearchStrategy[str]:
    """Text over a small ``alphabet``, drawn as bytes (several times cheaper than st.text)."""
    return st.binary(min_size=min_size, max_size=max_size).map(
        lambda raw: "".join(alphabet[byte % len(alphabet)] for byte in raw)
    )


hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
versions = hex64.map(lambda digest: "sha256:" + digest)
_PATH_TEXT = text_over(_LOWER_ALNUM + "._-/", min_size=1, max_size=48)
_DOMAIN_TEXT = text_over(_DOMAIN_CHARS + "-.", min_size=1, max_size=24)
_PORTS = st.one_of(st.just(""), st.integers(0, 65535).map(lambda p: f":{p}"))


def _grammar_path(text: str) -> str:
    """Any text over ``[a-z0-9._/-]`` made into path-components joined by '/': separators
    between alphanumerics only, and only '.', '_', '__' or a run of '-'."""
    components = []
    for raw in text.split("/"):
        runs = re.findall(r"[a-z0-9]+|[._-]+", raw)
        while runs and not runs[0][0].isalnum():
            runs.pop(0)
        while runs and not runs[-1][0].isalnum():
            runs.pop()
        fixed = [
            run if run[0].isalnum() or run in (".", "_", "__") or set(run) == {"-"} else "-"
            for run in runs
        ]
        if fixed:
            components.append("".join(fixed))
    return "/".join(components) or "a"


def _grammar_domain(text: str) -> str:
    """Any text over ``[A-Za-z0-9.-]`` made into dot-separated domain-components."""
    parts = [part.strip("-") for part in text.split(".")]
    return ".".join(part for part in parts if part) or "a"


_PORT_REQUIRED = st.integers(0, 65535).map(lambda p: f":{p}")
_PORTS = st.one_of(st.just(""), _PORT_REQUIRED)

domains = st.one_of(
    _PORTS.map(lambda port: "localhost" + port),
    st.builds(
        lambda groups, port: f"[{groups}::1]{port}",
        text_over("0123456789abcdefABCDEF:", max_size=20),
        _PORTS,
    ),
    st.builds(lambda host, port: _grammar_domain(host) + port, _DOMAIN_TEXT, _PORT_REQUIRED),
    st.builds(
        lambda host, port: _grammar_domain(host + ".") + ".example" + port, _DOMAIN_TEXT, _PORTS
    ),
)
"""A registry host that the grammar recognizes as one: it has a '.' or a port, is
``localhost``, or is an IPv6 literal (which always holds a ':')."""

reference_names = st.builds(
    lambda domain, path: f"{domain}/{_grammar_path(path)}" if domain else _grammar_path(path),
    st.one_of(st.just(""), domains),
    _PATH_TEXT,
)
tags = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_TAG_FIRST),
    text_over(_TAG_FIRST + ".-", max_size=127),
)
valid_references = st.builds(
    lambda name, tag: (name if tag is None else f"{name}:{tag}", name, tag),
    reference_names,
    st.one_of(st.none(), tags),
)
"""``(reference, name, tag)``: a reference as a user would write it, with or without a
tag, and the parts it was built from."""

normalized_references = valid_references.map(lambda parts: f"{parts[1]}:{parts[2] or 'latest'}")


# --- hostile text ---------------------------------------------------------------------

_INJECTION = st.one_of(st.sampled_from(INJECTIONS), text_over(HOSTILE_ALPHABET, min_size=1))


def injected(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``base`` with a shell/terminal/path injection spliced in at any position."""

    def splice(text: str, where: int, extra: str) -> str:
        where %= len(text) + 1
        return text[:where] + extra + text[where:]

    return st.builds(splice, base, st.integers(0, 300), _INJECTION)


hostile_toml_text = st.one_of(
    st.text(),
    text_over(HOSTILE_ALPHABET),
    injected(normalized_references),
    st.sampled_from(INJECTIONS),
    text_over(_LOWER_ALNUM + "-=:/", max_size=20).map(lambda s: "-" + s),
)
"""Arbitrary text, weighted towards what an attacker would try; no lone surrogates (which
neither a TOML file nor UTF-8 can hold)."""

hostile_text = st.one_of(
    hostile_toml_text,
    st.builds(lambda s, c: s + c, normalized_references, st.characters(categories=["Cs"])),
)
"""Arbitrary text, weighted towards what an attacker would try (lone surrogates included,
as json.loads can produce them)."""

toml_text = st.text(max_size=20)
"""Text a TOML file can hold (st.text() draws no lone surrogates)."""

cheap_hostile_text = st.one_of(
    st.text(max_size=20),
    text_over(HOSTILE_ALPHABET, max_size=20),
    st.sampled_from(INJECTIONS),
)
"""Hostile text that is quick to draw, for the leaves of JSON and TOML documents."""

# --- JSON -----------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    # bounded: integers beyond what the parsers can convert have their own tests
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    cheap_hostile_text,
    st.characters(categories=["Cs"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=10), children, max_size=5),
    ),
    max_leaves=10,
)


def nested(depth: int, kind: str) -> bytes:
    """A JSON document ``depth`` containers deep: ``[[[…]]]`` or ``{"a":{"a":…}}``."""
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


# --- TOML -----------------------------------------------------------------------------

# The lab's writer (lab/tomlw.py) writes every document the properties generate.
toml_dumps = tomlw.dumps
toml_value = tomlw.value_to_toml


toml_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),  # TOML integers are 64-bit
    st.floats(allow_nan=False),
    toml_text,
    cheap_hostile_text,
)
toml_values = st.recursive(
    toml_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(toml_text, children, max_size=4),
    ),
    max_leaves=6,
)
