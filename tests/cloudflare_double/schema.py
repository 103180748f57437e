"""Check JSON bodies against the typed models of the official `cloudflare` SDK (generated from Cloudflare's OpenAPI).

Request parameters are TypedDicts (wire names given by `PropertyInfo(alias=...)`), responses pydantic models
(wire names given by field aliases). `problems(tp, value)` walks either kind and returns every mismatch: unknown
key, missing required key, wrong JSON type, value outside a Literal. Unknown keys are errors, so a misspelt field
fails the test instead of being silently ignored as it would be by `model_validate` (the SDK allows extras).
"""

from __future__ import annotations

import collections.abc
import datetime
import types
import typing
from typing import Any

import pydantic
import typing_extensions
from cloudflare._utils._transform import PropertyInfo

_NONE = type(None)


def _is_typeddict(tp: Any) -> bool:
    return typing_extensions.is_typeddict(tp)


def _unwrap_annotated(tp: Any) -> tuple[Any, str | None]:
    alias = None
    while typing.get_origin(tp) in (typing.Annotated, typing_extensions.Annotated):
        args = typing.get_args(tp)
        for meta in args[1:]:
            if isinstance(meta, PropertyInfo) and meta.alias:
                alias = meta.alias
        tp = args[0]
    # Required[...] / NotRequired[...] wrappers inside TypedDicts
    while typing.get_origin(tp) in (
        typing_extensions.Required,
        typing_extensions.NotRequired,
        getattr(typing, "Required", None),
        getattr(typing, "NotRequired", None),
    ):
        tp = typing.get_args(tp)[0]
    return tp, alias


def _typeddict_fields(tp: Any) -> dict[str, tuple[Any, bool]]:
    """Wire name -> (type, required) of a TypedDict."""
    hints = typing_extensions.get_type_hints(tp, include_extras=True)
    required = set(getattr(tp, "__required_keys__", frozenset()))
    fields = {}
    for name, hint in hints.items():
        inner, alias = _unwrap_annotated(hint)
        fields[alias or name] = (inner, name in required or _marked_required(hint))
    return fields


def _marked_required(hint: Any) -> bool:
    """`Required[...]` anywhere in the Annotated wrappers (total=False TypedDicts of the SDK use it)."""
    while True:
        origin = typing.get_origin(hint)
        if origin is typing_extensions.Required or origin is getattr(typing, "Required", None):
            return True
        if origin in (typing.Annotated, typing_extensions.Annotated):
            hint = typing.get_args(hint)[0]
            continue
        return False


def _model_fields(tp: type[pydantic.BaseModel]) -> dict[str, tuple[Any, bool]]:
    fields = {}
    for name, info in tp.model_fields.items():
        fields[info.alias or name] = (info.annotation, info.is_required())
    return fields


def problems(tp: Any, value: Any, path: str = "$") -> list[str]:  # noqa: PLR0911, PLR0912
    """Every way `value` (decoded JSON) does not fit the SDK type `tp`; empty when it fits."""
    tp, _ = _unwrap_annotated(tp)
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return []
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and _NONE in options:
            return []
        best: list[str] | None = None
        for option in options:
            if option is _NONE:
                continue
            found = problems(option, value, path)
            if not found:
                return []
            if best is None or len(found) < len(best):
                best = found
        return best or [f"{path}: {value!r} matches no member of {tp}"]
    if origin in (typing.Literal, typing_extensions.Literal):
        allowed = typing.get_args(tp)
        ok = any(value == a and type(value) is type(a) for a in allowed)
        return [] if ok else [f"{path}: {value!r} is not one of {list(allowed)}"]
    if value is None:
        return [f"{path}: null where {getattr(tp, '__name__', tp)} is required"]
    if _is_typeddict(tp) or (isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)):
        if not isinstance(value, dict):
            return [f"{path}: expected an object ({tp.__name__}), got {type(value).__name__}"]
        fields = _typeddict_fields(tp) if _is_typeddict(tp) else _model_fields(tp)
        found = [f"{path}.{key}: unknown field of {tp.__name__}" for key in value if key not in fields]
        for key, (field_type, required) in fields.items():
            if key in value:
                found += problems(field_type, value[key], f"{path}.{key}")
            elif required:
                found.append(f"{path}.{key}: required by {tp.__name__} but missing")
        return found
    if origin in (list, collections.abc.Sequence, collections.abc.Iterable, typing.List) or tp in (list,):  # noqa: UP006
        if not isinstance(value, list):
            return [f"{path}: expected an array, got {type(value).__name__}"]
        (item_type,) = typing.get_args(tp) or (Any,)
        return [p for i, item in enumerate(value) for p in problems(item_type, item, f"{path}[{i}]")]
    if origin in (dict, collections.abc.Mapping, typing.Dict):  # noqa: UP006
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        _, value_type = typing.get_args(tp) or (str, Any)
        return [p for key, item in value.items() for p in problems(value_type, item, f"{path}.{key}")]
    if tp is bool:
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean, got {value!r}"]
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected an integer, got {value!r}"]
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a number, got {value!r}"]
    if tp is str:
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {value!r}"]
    if tp is datetime.datetime:
        try:
            datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return [f"{path}: expected an RFC 3339 date-time, got {value!r}"]
        return []
    return [f"{path}: no rule to check type {tp!r}"]
