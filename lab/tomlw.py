"""A tiny TOML writer: strings, ints, floats, bools, lists of scalars, tables, arrays of tables.

Keys whose value is None are left out (TOML has no null), which lets overrides delete keys.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(value: str) -> str:
    # JSON escapes are valid TOML escapes; keep non-ASCII raw (TOML forbids \u surrogates)
    # and escape DEL, which JSON leaves alone but TOML does not allow raw.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _is_table(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str | bytes)
        and len(value) > 0
        and all(isinstance(item, Mapping) for item in value)
    )


def value_to_toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return "[" + ", ".join(value_to_toml(item) for item in value if item is not None) + "]"
    if isinstance(value, Mapping):  # inline table
        items = (f"{_key(k)} = {value_to_toml(v)}" for k, v in value.items() if v is not None)
        return "{ " + ", ".join(items) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML: {value!r}")


def _emit(out: list[str], path: list[str], table: Mapping[str, Any]) -> None:
    scalars = [
        (k, v)
        for k, v in table.items()
        if v is not None and not _is_table(v) and not _is_table_array(v)
    ]
    for key, value in scalars:
        out.append(f"{_key(key)} = {value_to_toml(value)}")
    for key, value in table.items():
        sub = [*path, _key(key)]
        if _is_table(value):
            out.extend(["", f"[{'.'.join(sub)}]"])
            _emit(out, sub, value)
        elif _is_table_array(value):
            for item in value:
                out.extend(["", f"[[{'.'.join(sub)}]]"])
                _emit(out, sub, item)


def dumps(data: Mapping[str, Any]) -> str:
    """Serialise ``data`` (top-level scalars first, then tables in insertion order)."""
    out: list[str] = []
    _emit(out, [], data)
    text = "\n".join(out).lstrip("\n")
    return text + "\n"
