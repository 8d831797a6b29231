"""A small schema checker for the JSON that model, tokenizer and checkpoint files carry.

Each file format describes what it reads as a tree of the checkers below and calls
:func:`check` at load time, before any value is used; a violation raises :class:`SchemaError`
with the dotted path of the field (``model.vocab['hello']``, ``post_processor.single[2].type_id``)
and what was expected, which the format turns into its own error type naming the file::

    LAYER = Obj({"hidden_size": Int(1, 1 << 16), "hidden_act": Opt(Str())}, required=("hidden_size",))
    check(json_value, LAYER)            # returns the value; SchemaError("hidden_size: ...") otherwise

Integers are Python ints (bools are not integers here), floats are finite numbers (ints are
accepted where a float is expected, as JSON writers drop the ``.0``), strings are str. Unknown keys
of an :class:`Obj` are allowed unless ``closed=True`` (HF files carry many keys nobody reads).
"""
from __future__ import annotations

import json
import math
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

__all__ = ["SchemaError", "Schema", "Int", "Float", "Bool", "Str", "Const", "Opt", "Any_", "Either", "Arr", "Tup", "Obj",
           "MapOf", "check", "load_json"]


class SchemaError(ValueError):
    """A value does not have the expected shape; ``field`` is its dotted path ('' for the root)."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


def _show(value: Any) -> str:
    """A short description of a value for an error message (never the whole of a big value)."""
    if isinstance(value, (dict, list)):
        return f"of {len(value)} items"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", type(None): "null",
            list: "a JSON array", dict: "a JSON object"}.get(type(value), type(value).__name__)


class Schema:
    """One checker; ``__call__(value, field)`` returns the value or raises SchemaError."""

    def __call__(self, value: Any, field: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class Int(Schema):
    """An integer in ``[lo, hi]`` (not a bool, not a float)."""

    def __init__(self, lo: int = -(1 << 63), hi: int = (1 << 63) - 1):
        self.lo, self.hi = lo, hi

    def __call__(self, value: Any, field: str) -> int:
        if type(value) is not int:
            raise SchemaError(field, f"expected an integer, got {_kind(value)} {_show(value)}")
        if not self.lo <= value <= self.hi:
            raise SchemaError(field, f"{_show(value)} is outside [{self.lo}, {self.hi}]")
        return value


class Float(Schema):
    """A finite number in ``[lo, hi]`` (``[lo, hi)`` with ``below_hi``; ints accepted)."""

    def __init__(self, lo: float = -math.inf, hi: float = math.inf, below_hi: bool = False):
        self.lo, self.hi, self.below_hi = lo, hi, below_hi

    def __call__(self, value: Any, field: str) -> float:
        if type(value) not in (int, float):
            raise SchemaError(field, f"expected a number, got {_kind(value)} {_show(value)}")
        if not math.isfinite(value) or not self.lo <= value <= self.hi or (self.below_hi and value == self.hi):
            raise SchemaError(field, f"{_show(value)} is not a finite number in [{self.lo}, {self.hi}"
                                     f"{')' if self.below_hi else ']'}")
        return float(value) if type(value) is float else value


class Bool(Schema):
    """true or false."""

    def __call__(self, value: Any, field: str) -> bool:
        if type(value) is not bool:
            raise SchemaError(field, f"expected true or false, got {_kind(value)} {_show(value)}")
        return value


class Str(Schema):
    """A string of at most ``max_len`` characters (``min_len`` at least), valid Unicode (no lone surrogate)."""

    def __init__(self, min_len: int = 0, max_len: int = 1 << 20):
        self.min_len, self.max_len = min_len, max_len

    def __call__(self, value: Any, field: str) -> str:
        if type(value) is not str:
            raise SchemaError(field, f"expected a string, got {_kind(value)} {_show(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise SchemaError(field, f"string of length {len(value)} is outside [{self.min_len}, {self.max_len}]")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SchemaError(field, "string is not valid Unicode (a lone surrogate)") from None
        return value


class Const(Schema):
    """One of the given values (compared by type and value)."""

    def __init__(self, *values: Any):
        self.values = values

    def __call__(self, value: Any, field: str) -> Any:
        if not any(type(value) is type(v) and value == v for v in self.values):
            raise SchemaError(field, f"expected one of {', '.join(map(repr, self.values))}, got {_show(value)}")
        return value


class Any_(Schema):
    """Anything (a field that is read elsewhere or not at all)."""

    def __call__(self, value: Any, field: str) -> Any:
        return value


class Opt(Schema):
    """null or the inner schema."""

    def __init__(self, inner: Schema):
        self.inner = inner

    def __call__(self, value: Any, field: str) -> Any:
        return None if value is None else self.inner(value, field)


class Either(Schema):
    """The first of several schemas that accepts the value (the error names all of them)."""

    def __init__(self, *options: Schema, what: str):
        self.options, self.what = options, what

    def __call__(self, value: Any, field: str) -> Any:
        for option in self.options:
            try:
                return option(value, field)
            except SchemaError:
                continue
        raise SchemaError(field, f"expected {self.what}, got {_kind(value)} {_show(value)}")


class Arr(Schema):
    """An array of items of one schema, with a length in ``[min_len, max_len]``."""

    def __init__(self, item: Schema, min_len: int = 0, max_len: int = 1 << 24):
        self.item, self.min_len, self.max_len = item, min_len, max_len

    def __call__(self, value: Any, field: str) -> list:
        if type(value) is not list:
            raise SchemaError(field, f"expected a JSON array, got {_kind(value)} {_show(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            raise SchemaError(field, f"array of {len(value)} items; expected {self.min_len} to {self.max_len}")
        for i, item in enumerate(value):
            self.item(item, f"{field}[{i}]")
        return value


class Tup(Schema):
    """A fixed-length array with one schema per position (``["</s>", 2]``)."""

    def __init__(self, *items: Schema):
        self.items = items

    def __call__(self, value: Any, field: str) -> list:
        if type(value) is not list or len(value) != len(self.items):
            raise SchemaError(field, f"expected an array of {len(self.items)} items, got {_kind(value)} {_show(value)}")
        for i, (item, sub) in enumerate(zip(value, self.items)):
            sub(item, f"{field}[{i}]")
        return value


class Obj(Schema):
    """An object with known fields; ``required`` ones must be present (with any value the schema allows)."""

    def __init__(self, fields: Mapping[str, Schema], required: Iterable[str] = (), closed: bool = False,
                 check: Optional[Callable[[Dict[str, Any], str], None]] = None):
        self.fields, self.required, self.closed, self.extra_check = dict(fields), tuple(required), closed, check

    def __call__(self, value: Any, field: str) -> dict:
        if type(value) is not dict:
            raise SchemaError(field, f"expected a JSON object, got {_kind(value)} {_show(value)}")
        for name in self.required:
            if name not in value:
                raise SchemaError(_join(field, name), "is missing")
        for name, item in value.items():
            if name in self.fields:
                self.fields[name](item, _join(field, name))
            elif self.closed:
                raise SchemaError(_join(field, name), f"unknown field (known: {', '.join(self.fields)})")
        if self.extra_check is not None:
            self.extra_check(value, field)
        return value


class MapOf(Schema):
    """An object used as a map: any string keys (``key`` checks them), values of one schema."""

    def __init__(self, value: Schema, key: Schema = Str(), max_len: int = 1 << 24):
        self.value, self.key, self.max_len = value, key, max_len

    def __call__(self, value: Any, field: str) -> dict:
        if type(value) is not dict:
            raise SchemaError(field, f"expected a JSON object, got {_kind(value)} {_show(value)}")
        if len(value) > self.max_len:
            raise SchemaError(field, f"object of {len(value)} entries; at most {self.max_len}")
        for k, v in value.items():
            where = f"{field}[{_show(k)}]"
            self.key(k, where)
            self.value(v, where)
        return value


def _join(field: str, name: str) -> str:
    return f"{field}.{name}" if field else name


def check(value: Any, schema: Schema, field: str = "") -> Any:
    """Check ``value`` against ``schema``; returns it, or raises :class:`SchemaError`."""
    return schema(value, field)


def load_json(text: "str | bytes", **options: Any) -> Any:
    """``json.loads(text, **options)`` whose every failure is a ValueError (also nesting too deep
    for the parser). ``NaN`` / ``Infinity`` parse as Python does; the schemas' :class:`Float`
    refuses them."""
    try:
        return json.loads(text, **options)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
