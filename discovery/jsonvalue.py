"""One rule for every JSON value read from etcd: bounded before anything looks inside.

Anyone who can write to etcd (a learner with etcdctl, a broken tool, an
attacker) can put any bytes under the lab's prefixes, and every agent and DNS
server reads them. Python's ``json.loads`` alone lets three kinds of value
through that must never reach the code behind it:

* a value nested deeper than the interpreter's recursion limit, which raises
  ``RecursionError`` (50,000 ``[``), not a ``JSONDecodeError``;
* a number of thousands of digits, which raises ``ValueError`` from ``int``
  (over 4,300 digits) or costs quadratic time below that;
* a value of megabytes, which costs memory and time in every reader.

``load_json`` checks size, then number length (while decoding) and nesting
depth (after decoding, without recursion), and turns every failure into a
``SchemaError`` that names what was wrong. Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from discovery.errors import SchemaError

# Records and leases are a few hundred bytes; a whole node record under 1 KiB.
MAX_VALUE_BYTES = 64 * 1024
# Records are two levels deep (an object holding a list of tags).
MAX_NESTING_DEPTH = 8
# Enough for any 64-bit number, with sign and exponent.
MAX_NUMBER_CHARS = 32


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(text)} characters (the limit is {MAX_NUMBER_CHARS})")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"a number of {len(text)} characters (the limit is {MAX_NUMBER_CHARS})")
    return float(text)


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def nesting_depth(value: Any, limit: int = MAX_NESTING_DEPTH) -> int:
    """How deep lists and objects nest in ``value`` (a scalar is 0), counted
    iteratively and stopping as soon as ``limit`` is passed."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest


def load_json(raw: bytes | str, what: str) -> Any:
    """Decode one value read from outside, or raise SchemaError naming ``what``."""
    size = len(raw)
    if size > MAX_VALUE_BYTES:
        raise SchemaError(f"{what} value is {size} bytes (the limit is {MAX_VALUE_BYTES})")
    try:
        value = json.loads(
            raw,
            parse_int=_bounded_int,
            parse_float=_bounded_float,
            parse_constant=_refuse_constant,
        )
    except RecursionError:
        raise SchemaError(f"{what} value nests too deeply to decode") from None
    except UnicodeDecodeError as error:
        raise SchemaError(f"{what} value is not UTF-8: {error.reason}") from None
    except ValueError as error:  # JSONDecodeError, and the number checks above
        raise SchemaError(f"{what} value is not JSON: {error}") from None
    if nesting_depth(value) > MAX_NESTING_DEPTH:
        raise SchemaError(f"{what} value nests deeper than {MAX_NESTING_DEPTH} levels")
    return value


def load_json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    value = load_json(raw, what)
    if not isinstance(value, dict):
        raise SchemaError(f"{what} value must be a JSON object, got {type(value).__name__}")
    return value


__all__ = ["MAX_NESTING_DEPTH", "MAX_VALUE_BYTES", "load_json", "load_json_object"]
