"""Reading and writing the JSON of TDB's ``fast_dataclasses``: the shared machinery of both codecs.

TDB wrote objects with a ``"dataclass_name"`` key (older files have none and were matched by their field
names), renamed fields over the years (``idx`` -> ``neuron_index``, ...) and read with Python's ``json``,
which accepts the non-standard tokens ``NaN``/``Infinity`` that ``json.dumps`` writes. ``orjson`` is much
faster but rejects those tokens, so ``parse_json`` uses it whenever it can and falls back to ``json``.

``TdbReader`` decodes values position by position (we always know which class a position holds, so the
field-name matching TDB needed is only a check here) and turns every problem into ``CorruptBlob`` naming
the blob and the JSON path, e.g. ``most_positive_activation_records[3].activations[7]``. Every NaN it
returns is the ``math.nan`` object, so ``==`` on decoded dataclasses holds when the data is equal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NoReturn

import orjson

from neuron_explainer.errors import CorruptBlob

_NON_STANDARD_TOKENS = (b"NaN", b"Infinity")
_FLOAT_ONLY = frozenset({float})
_STR_ONLY = frozenset({str})


def parse_json(data: bytes, blob: str, what: str) -> Any:
    """Parse a blob's bytes; ``CorruptBlob`` (naming ``what`` and ``blob``) when it is not JSON."""
    try:
        if any(token in data for token in _NON_STANDARD_TOKENS):
            return json.loads(data)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:  # e.g. lone surrogate escapes or huge ints, which json accepts
            return json.loads(data)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CorruptBlob(f"{what} {blob} is not valid JSON: {error}", blob=blob) from None


def dump_json(obj: Any, *, finite: bool) -> bytes:
    """Compact UTF-8 JSON. ``finite=False`` means some float may be NaN/inf: written as ``NaN``/``Infinity``
    like Python's ``json`` (orjson would silently write ``null``)."""
    if finite:
        try:
            return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
        except orjson.JSONEncodeError:  # lone surrogates in a token: json can escape them
            pass
    try:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=True, default=_plain)
        return text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=True, default=_plain)
        return text.encode("ascii")


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python values (orjson's OPT_SERIALIZE_NUMPY, for the json path)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def floats_are_finite(values: Sequence[float]) -> bool:
    """The fast check (one C-level sum): True means every value is finite; False may also mean finite
    values near 1e308 whose sum overflowed. For fast paths, where a false "no" only costs speed."""
    return math.isfinite(sum(values, 0.0))


def all_finite(values: Sequence[float]) -> bool:
    """Exactly: no NaN or ±inf among ``values`` (the fast check first, each value only if it fails)."""
    return floats_are_finite(values) or all(math.isfinite(v) for v in values)


class TdbReader:
    """Typed access to one parsed blob; every failure raises ``CorruptBlob`` naming blob and path."""

    def __init__(self, blob: str, what: str) -> None:
        self.blob = blob
        self.what = what

    def fail(self, path: str, why: str) -> NoReturn:
        where = f" at {path}" if path else ""
        raise CorruptBlob(f"corrupt {self.what} {self.blob}{where}: {why}", blob=self.blob, path=path or None)

    def obj(
        self,
        value: Any,
        path: str,
        names: Collection[str],
        fields: Collection[str],
        renames: Mapping[str, str] | None = None,
        deleted: Collection[str] = (),
    ) -> dict[str, Any]:
        """An object of one of the dataclass ``names``, legacy renames applied (the current name wins when
        a file has both), deleted fields and ``dataclass_name`` dropped, unknown fields kept (callers
        ignore them). Without ``dataclass_name`` at least one known field must be present."""
        if not isinstance(value, dict):
            self.fail(path, f"expected an object ({' or '.join(names)}), got {_kind(value)}")
        name = value.get("dataclass_name")
        if name is not None and name not in names:
            self.fail(path, f"dataclass_name is {name!r}, expected {' or '.join(repr(n) for n in names)}")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "dataclass_name" or key in deleted:
                continue
            new_key = renames.get(key, key) if renames else key
            if new_key != key and new_key in value:
                continue
            out[new_key] = item
        if name is None and value and not any(f in out for f in fields):
            self.fail(path, f"object with fields {sorted(value)} matches none of {' or '.join(names)}")
        return out

    def required(self, d: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in d:
            self.fail(path, f"missing field {key!r}")
        return d[key]

    def index(self, value: Any, path: str) -> int:
        """A non-negative layer or unit index; old files hold layer indices as strings ("5")."""
        if isinstance(value, str):
            text = value.strip()
            if text.isascii() and text.isdigit():
                return int(text)
            self.fail(path, f"expected a non-negative integer, got the string {value!r}")
        number = self.integer(value, path)
        if number < 0:
            self.fail(path, f"expected a non-negative integer, got {number}")
        return number

    def integer(self, value: Any, path: str) -> int:
        if isinstance(value, bool):
            self.fail(path, f"expected an integer, got {_kind(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        self.fail(path, f"expected an integer, got {_kind(value)}")

    def number(self, value: Any, path: str, *, allow_inf: bool = True) -> float:
        """A float; ``null`` (how orjson writes NaN) and NaN become ``math.nan``."""
        if value is None:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"expected a number, got {_kind(value)}")
        number = float(value)
        if number != number:
            return math.nan
        if not allow_inf and math.isinf(number):
            self.fail(path, f"expected a finite number or NaN, got {number}")
        return number

    def optional_number(self, value: Any, path: str) -> float | None:
        """``null`` stays None (the field's "undefined"); a NaN token becomes ``math.nan``."""
        return None if value is None else self.number(value, path)

    def numbers(self, value: Any, path: str, *, allow_inf: bool = False) -> list[float]:
        """A list of floats. Fast path: a list of finite floats is returned as it is."""
        if not isinstance(value, list):
            self.fail(path, f"expected a list of numbers, got {_kind(value)}")
        if set(map(type, value)) <= _FLOAT_ONLY and floats_are_finite(value):
            return value
        return [self.number(x, f"{path}[{k}]", allow_inf=allow_inf) for k, x in enumerate(value)]

    def strings(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list):
            self.fail(path, f"expected a list of strings, got {_kind(value)}")
        if set(map(type, value)) <= _STR_ONLY:
            return value
        for k, x in enumerate(value):
            if not isinstance(x, str):
                self.fail(f"{path}[{k}]", f"expected a string, got {_kind(x)}")
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            self.fail(path, f"expected a string, got {_kind(value)}")
        return value

    def items(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            self.fail(path, f"expected a list, got {_kind(value)}")
        return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
