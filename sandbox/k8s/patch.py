"""The three patch formats of the Kubernetes API server: JSON merge patch, JSON patch and strategic merge patch.

Used by the API-server emulator for ``PATCH`` requests. Every function returns a new object and never mutates its
inputs. Sources relied on:

* RFC 7386 (JSON Merge Patch) for :func:`json_merge_patch`.
* RFC 6902 (JSON Patch) and RFC 6901 (JSON Pointer) for :func:`json_patch`.
* kubernetes/community ``contributors/devel/sig-api-machinery/strategic-merge-patch.md`` (directives ``$patch``,
  ``$retainKeys``, ``$setElementOrder/``, ``$deleteFromPrimitiveList/``), the "Update API Objects in Place Using
  kubectl patch" task page, and the reference implementation ``k8s.io/apimachinery/pkg/util/strategicpatch``
  (``mergeMap``, ``mergeSlice``, ``normalizeElementOrder``, ``mergeSortedSlice``, ``applyRetainKeysDirective``)
  for :func:`strategic_merge_patch`, including the order of merged lists: items named in the patch keep the
  patch's order, the other live items keep theirs, and the two are interleaved by their live positions, so a
  new item in a one-item patch list lands *first* (as the task page shows for an added container).
* ``k8s.io/apiserver/pkg/endpoints/handlers/patch.go`` for the status codes: an undecodable JSON patch is 400, a
  JSON patch that fails to apply is 422; strategic-merge format errors are 400.

Deliberate departures from the Go code, where it leaks directives or mishandles absent fields: a subtree the live
object lacks is merged into an empty value (so its directives are processed and nulls dropped, as merge patch
does) instead of being copied verbatim; ``$patch: delete`` in a map value removes the key (the design doc's
wording; the Go code leaves ``{}``); ``$deleteFromPrimitiveList/<f>`` only ever removes values (Go sets an absent
list to the values to delete, and replaces a non-merging list by them); errors the real server answers with 500
(missing merge key, mixed list element types, a ``$setElementOrder`` list that contradicts the patch) are 422.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PatchError", "json_merge_patch", "json_patch", "strategic_merge_patch"]

PATCH_DIRECTIVE = "$patch"
RETAIN_KEYS_DIRECTIVE = "$retainKeys"
SET_ELEMENT_ORDER_PREFIX = "$setElementOrder/"
DELETE_FROM_PRIMITIVE_LIST_PREFIX = "$deleteFromPrimitiveList/"

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_MAX_REF_HOPS = 64


class PatchError(ValueError):
    """A patch that cannot be applied; the API server answers 422 (or 400 for malformed patches).

    Attribute `code`: int HTTP status to return (422 for e.g. a failed JSON-patch `test` op or a path that does not
    exist, 400 for a malformed patch document).
    """

    def __init__(self, message: str, code: int = 422) -> None:
        """Keep the message as the exception text and `code` as the HTTP status to answer with."""
        super().__init__(message)
        self.code = code


def _json_equal(left: Any, right: Any) -> bool:
    """Equality of two JSON values: numbers compare by value, booleans never equal numbers."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(_json_equal(v, right[k]) for k, v in left.items())
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_json_equal(a, b) for a, b in zip(left, right, strict=True))
    return type(left) is type(right) and left == right


# ---------------------------------------------------------------------------------------------------------------
# RFC 7386: JSON merge patch
# ---------------------------------------------------------------------------------------------------------------


def json_merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch to `target` and return the result as a new object.

    Objects merge recursively, a ``null`` member removes the key, any non-object patch (arrays included) replaces
    the target outright, and a non-object target is treated as an empty object when the patch is an object.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    return _merge_patch_into(result, patch)


def _merge_patch_into(result: dict, patch: dict) -> dict:
    """Merge `patch` into `result` (already a private copy) in place and return it."""
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            result[key] = _merge_patch_into(current if isinstance(current, dict) else {}, value)
        else:
            result[key] = copy.deepcopy(value)
    return result


# ---------------------------------------------------------------------------------------------------------------
# RFC 6902: JSON patch
# ---------------------------------------------------------------------------------------------------------------


def json_patch(target: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch (a list of operations) to `target` and return the result as a new object.

    Supports ``add``, ``remove``, ``replace``, ``move``, ``copy`` and ``test`` with RFC 6901 pointers (``~0`` and
    ``~1`` escapes, ``-`` to append to an array). Raises :class:`PatchError` with code 400 when `operations` is
    not a list of objects (the server cannot decode it) and 422 when an operation fails: a failed ``test``, a
    missing path, an index out of range, an unknown ``op`` or a missing ``value``/``from`` member.
    """
    if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
        raise PatchError("a JSON patch must be a list of operation objects", code=400)
    document = copy.deepcopy(target)
    for number, operation in enumerate(operations):
        try:
            document = _apply_operation(document, operation)
        except PatchError as error:
            raise PatchError(f"operation {number} ({operation.get('op')!r}): {error}", code=error.code) from None
    return document


def _parse_pointer(pointer: Any) -> list[str]:
    """Split an RFC 6901 JSON pointer into unescaped reference tokens."""
    if not isinstance(pointer, str):
        raise PatchError(f"path {pointer!r} is not a string")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"path {pointer!r} does not start with '/'")
    tokens = []
    for raw in pointer[1:].split("/"):
        if re.search(r"~(?![01])", raw):
            raise PatchError(f"path {pointer!r} has an invalid '~' escape")
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tokens


def _array_index(container: list, segment: str, *, allow_end: bool) -> int:
    """The array index a pointer segment designates; `allow_end` admits ``len`` and ``-`` (after the last item)."""
    if segment == "-" and allow_end:
        return len(container)
    if not _ARRAY_INDEX.fullmatch(segment):
        raise PatchError(f"{segment!r} is not an array index")
    index = int(segment)
    if index > len(container) or (index == len(container) and not allow_end):
        raise PatchError(f"array index {index} is out of range")
    return index


def _resolve_pointer(document: Any, tokens: list[str]) -> Any:
    """The value a pointer designates; a missing member or index is a 422."""
    value = document
    for token in tokens:
        if isinstance(value, dict):
            if token not in value:
                raise PatchError(f"path /{'/'.join(tokens)} does not exist")
            value = value[token]
        elif isinstance(value, list):
            value = value[_array_index(value, token, allow_end=False)]
        else:
            raise PatchError(f"path /{'/'.join(tokens)} does not exist")
    return value


def _pointer_parent(document: Any, tokens: list[str]) -> dict | list:
    """The container holding the last token of a non-empty pointer; it must exist."""
    parent = _resolve_pointer(document, tokens[:-1])
    if not isinstance(parent, dict | list):
        raise PatchError(f"path /{'/'.join(tokens)} does not exist: its parent is not an object or array")
    return parent


def _pointer_add(document: Any, tokens: list[str], value: Any) -> Any:
    """RFC 6902 ``add``: set an object member or insert into an array; return the (possibly new) document."""
    if not tokens:
        return value
    parent = _pointer_parent(document, tokens)
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    else:
        parent.insert(_array_index(parent, tokens[-1], allow_end=True), value)
    return document


def _pointer_remove(document: Any, tokens: list[str]) -> Any:
    """RFC 6902 ``remove``: delete an existing member or array element and return the removed value."""
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _pointer_parent(document, tokens)
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise PatchError(f"path /{'/'.join(tokens)} does not exist")
        return parent.pop(tokens[-1])
    return parent.pop(_array_index(parent, tokens[-1], allow_end=False))


def _operand(operation: dict, member: str) -> Any:
    """A required member of an operation (``value`` may legitimately be ``null``)."""
    if member not in operation:
        raise PatchError(f"missing member {member!r}")
    return operation[member]


def _op_add(document: Any, path: list[str], operation: dict) -> Any:
    """``add``: set a member, insert into an array (``-`` appends) or, at the root, replace the document."""
    return _pointer_add(document, path, copy.deepcopy(_operand(operation, "value")))


def _op_remove(document: Any, path: list[str], operation: dict) -> Any:
    """``remove``: the target location must exist (`operation` has nothing more to say)."""
    del operation
    _pointer_remove(document, path)
    return document


def _op_replace(document: Any, path: list[str], operation: dict) -> Any:
    """``replace``: the target location must exist; its value is replaced in place."""
    value = copy.deepcopy(_operand(operation, "value"))
    if not path:
        return value
    parent = _pointer_parent(document, path)
    if isinstance(parent, dict):
        if path[-1] not in parent:
            raise PatchError(f"path /{'/'.join(path)} does not exist")
        parent[path[-1]] = value
    else:
        parent[_array_index(parent, path[-1], allow_end=False)] = value
    return document


def _op_move(document: Any, path: list[str], operation: dict) -> Any:
    """``move``: remove the value at ``from`` and add it at ``path``; ``from`` may not be a proper prefix."""
    source = _parse_pointer(_operand(operation, "from"))
    if path[: len(source)] == source and len(path) > len(source):
        raise PatchError("cannot move a value into one of its own children")
    if path == source:
        _resolve_pointer(document, source)
        return document
    return _pointer_add(document, path, _pointer_remove(document, source))


def _op_copy(document: Any, path: list[str], operation: dict) -> Any:
    """``copy``: add a deep copy of the value at ``from`` at ``path``."""
    source = _parse_pointer(_operand(operation, "from"))
    return _pointer_add(document, path, copy.deepcopy(_resolve_pointer(document, source)))


def _op_test(document: Any, path: list[str], operation: dict) -> Any:
    """``test``: the value at ``path`` must equal ``value`` (JSON equality), else 422."""
    if not _json_equal(_resolve_pointer(document, path), _operand(operation, "value")):
        raise PatchError(f"test failed: the value at {operation['path']!r} differs")
    return document


_OPERATIONS: dict[str, Callable[[Any, list[str], dict], Any]] = {
    "add": _op_add,
    "remove": _op_remove,
    "replace": _op_replace,
    "move": _op_move,
    "copy": _op_copy,
    "test": _op_test,
}


def _apply_operation(document: Any, operation: dict) -> Any:
    """Apply one JSON patch operation to `document` (a private copy) and return the new document."""
    op = operation.get("op")
    handler = _OPERATIONS.get(op) if isinstance(op, str) else None
    if handler is None:
        raise PatchError(f"unknown operation {op!r}")
    return handler(document, _parse_pointer(_operand(operation, "path")), operation)


# ---------------------------------------------------------------------------------------------------------------
# Kubernetes strategic merge patch
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """Patch metadata of one field: its strategies, merge key and the resolved schemas of its value/items."""

    strategies: frozenset[str]
    merge_key: str | None
    schema: dict | None
    items: dict | None

    @property
    def merges(self) -> bool:
        """Whether lists of this field merge (strategy ``merge`` or ``merge,retainKeys``)."""
        return "merge" in self.strategies

    @property
    def replaces(self) -> bool:
        """Whether maps of this field are replaced rather than merged (strategy ``replace``)."""
        return "replace" in self.strategies


_NO_FIELD = _Field(frozenset(), None, None, None)
_DELETED = object()  # what merging a map holding "$patch: delete" yields: the key goes away


def _is_directive(key: str) -> bool:
    """Whether a map key is a strategic-merge directive (and so must never reach the result)."""
    return (
        key in (PATCH_DIRECTIVE, RETAIN_KEYS_DIRECTIVE)
        or key.startswith(SET_ELEMENT_ORDER_PREFIX)
        or key.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
    )


def _strip_directives(value: Any) -> Any:
    """A deep copy of `value` without directive keys at any depth (for lists that are taken as they are)."""
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not _is_directive(k)}
    if isinstance(value, list):
        return [_strip_directives(item) for item in value]
    return value


def _index(ids: list[Any], wanted: Any) -> int:
    """Position of `wanted` among `ids` by JSON equality, or -1."""
    for position, candidate in enumerate(ids):
        if _json_equal(candidate, wanted):
            return position
    return -1


def _merge_sorted(left: list, right: list, server_ids: list[Any], ident: Callable[[Any], Any]) -> list:
    """Interleave live-only items (`left`) into patch items (`right`), both already sorted (``mergeSortedSlice``).

    A live-only item goes first only when both it and the next patch item are in the live list and it comes
    earlier there; otherwise the patch item goes first.
    """
    merged: list = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i < len(left) and j < len(right):
            left_at, right_at = _index(server_ids, ident(left[i])), _index(server_ids, ident(right[j]))
            take_left = left_at >= 0 and right_at >= 0 and left_at < right_at
        else:
            take_left = i < len(left)
        if take_left:
            merged.append(left[i])
            i += 1
        else:
            merged.append(right[j])
            j += 1
    return merged


class _StrategicMerger:
    """Applies a strategic merge patch, navigating the JSON-schema definitions lazily alongside the patch."""

    def __init__(self, definitions: dict[str, dict] | None) -> None:
        """Keep the definitions (``$defs`` of kubernetes-validate's ``_definitions.json``)."""
        self.definitions = definitions or {}

    # -- schema navigation -----------------------------------------------------------------------------------

    def lookup(self, ref: str) -> dict | None:
        """The definition a ``$ref`` such as ``#/$defs/io.k8s.api.core.v1.Container`` names, if known."""
        for prefix in ("#/$defs/", "#/definitions/"):
            if ref.startswith(prefix):
                found = self.definitions.get(ref[len(prefix) :])
                return found if isinstance(found, dict) else None
        return None

    def resolve(self, schema: Any) -> dict | None:
        """Follow ``$ref`` (and ``allOf``/``oneOf``/``anyOf`` wrappers) to the schema describing the value."""
        for _ in range(_MAX_REF_HOPS):
            if not isinstance(schema, dict):
                return None
            ref = schema.get("$ref")
            if not isinstance(ref, str):
                break
            schema = self.lookup(ref)
        else:
            return None
        if any(key in schema for key in ("properties", "additionalProperties", "items")):
            return schema
        for combinator in ("allOf", "oneOf", "anyOf"):
            for member in schema.get(combinator) or []:
                resolved = self.resolve(member)
                if resolved and any(key in resolved for key in ("properties", "additionalProperties", "items")):
                    return resolved
        return schema

    def field(self, schema: dict | None, key: str) -> _Field:
        """Patch metadata of field `key` of an object schema (a property, or the value schema of a map)."""
        if not schema:
            return _NO_FIELD
        properties = schema.get("properties")
        if isinstance(properties, dict) and isinstance(properties.get(key), dict):
            field_schema = properties[key]
        elif isinstance(schema.get("additionalProperties"), dict):
            field_schema = schema["additionalProperties"]
        else:
            return _NO_FIELD
        candidates = [field_schema] + [
            member
            for combinator in ("allOf", "oneOf", "anyOf")
            for member in field_schema.get(combinator) or []
            if isinstance(member, dict)
        ]
        strategy = next(
            (c["x-kubernetes-patch-strategy"] for c in candidates if "x-kubernetes-patch-strategy" in c), ""
        )
        merge_key = next(
            (c["x-kubernetes-patch-merge-key"] for c in candidates if "x-kubernetes-patch-merge-key" in c), None
        )
        resolved = self.resolve(field_schema)
        items = self.resolve(resolved.get("items")) if resolved else None
        strategies = frozenset(part.strip() for part in str(strategy).split(",") if part.strip())
        return _Field(strategies, merge_key or None, resolved, items)

    # -- maps ------------------------------------------------------------------------------------------------

    def merge_map(self, target: dict, patch: dict, schema: dict | None) -> Any:
        """Merge `patch` into `target` (a private copy, changed in place); `_DELETED` for ``$patch: delete``."""
        if PATCH_DIRECTIVE in patch:
            directive = patch[PATCH_DIRECTIVE]
            if directive == "delete":
                return _DELETED
            if directive == "replace":
                rest = {k: v for k, v in patch.items() if k != PATCH_DIRECTIVE}
                return self.merge_map({}, rest, schema)
            raise PatchError(f"unknown $patch directive {directive!r} in a map", code=400)
        self.apply_retain_keys(target, patch)
        handled = self.apply_element_orders(target, patch, schema)
        for key, value in patch.items():
            if key not in handled and not _is_directive(key):
                self.merge_field(target, key, value, schema)
        for key, values in patch.items():
            if key.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX):
                self.delete_from_primitive_list(target, key, values)
        return target

    def merge_field(self, target: dict, key: str, value: Any, schema: dict | None) -> None:
        """Merge one patch member into `target`: null deletes, maps merge, lists follow the field's strategy."""
        if value is None:
            target.pop(key, None)
            return
        field = self.field(schema, key)
        current = target.get(key)
        if isinstance(value, dict):
            base = current if isinstance(current, dict) and not field.replaces else {}
            merged = self.merge_map(base, value, field.schema)
            if merged is _DELETED:
                target.pop(key, None)
            else:
                target[key] = merged
        elif isinstance(value, list):
            target[key] = self.merge_list(current if isinstance(current, list) else [], value, field)
        else:
            target[key] = value

    def apply_retain_keys(self, target: dict, patch: dict) -> None:
        """``$retainKeys``: drop the target's keys not listed; every key the patch sets must be listed (400)."""
        if RETAIN_KEYS_DIRECTIVE not in patch:
            return
        retained = patch[RETAIN_KEYS_DIRECTIVE]
        if not isinstance(retained, list):
            raise PatchError("$retainKeys must be a list of field names", code=400)
        for key, value in patch.items():
            if value is None or _is_directive(key):
                continue
            if key not in retained:
                raise PatchError(f"field {key!r} is set by the patch but missing from $retainKeys", code=400)
        for key in [k for k in target if k not in retained]:
            del target[key]

    def delete_from_primitive_list(self, target: dict, key: str, values: Any) -> None:
        """``$deleteFromPrimitiveList/<field>``: remove every occurrence of the given values from the list."""
        name = key[len(DELETE_FROM_PRIMITIVE_LIST_PREFIX) :]
        if not name or not isinstance(values, list):
            raise PatchError(f"{key!r} must name a field and hold a list", code=400)
        current = target.get(name)
        if isinstance(current, list):
            target[name] = [item for item in current if _index(values, item) < 0]

    # -- lists -----------------------------------------------------------------------------------------------

    def merge_list(self, current: list, patch: list, field: _Field) -> list:
        """Merge a patch list into a live list (a private copy) according to the field's strategy."""
        if not field.merges:
            return _strip_directives(patch)
        if any(isinstance(item, list) for item in [*current, *patch]):
            raise PatchError("lists of lists cannot be strategically merged")
        maps = [isinstance(item, dict) for item in [*current, *patch]]
        if any(maps) and not all(maps):
            raise PatchError("list element types are not identical")
        if not any(maps):
            return self.merge_primitive_list(current, patch)
        if not field.merge_key:
            raise PatchError("cannot merge lists of objects without a merge key")
        return self.merge_keyed_list(current, patch, field.merge_key, field.items)

    def merge_primitive_list(self, current: list, patch: list) -> list:
        """A list with merge strategy and no merge key is a set: union without duplicates."""
        merged: list = []
        for item in [*current, *patch]:
            if _index(merged, item) < 0:
                merged.append(item)
        return self.normalize_order(merged, patch, current, lambda item: item)

    def merge_keyed_list(self, current: list, patch: list, merge_key: str, items: dict | None) -> list:
        """Merge lists of objects by `merge_key`, honouring ``$patch: delete`` and ``$patch: replace`` items."""

        def ident(item: Any) -> Any:
            if merge_key not in item:
                raise PatchError(f"list item {item!r} has no merge key {merge_key!r}")
            return item[merge_key]

        plain: list[dict] = []
        replace = False
        for item in patch:
            if PATCH_DIRECTIVE not in item:
                plain.append(item)
            elif item[PATCH_DIRECTIVE] == "delete":
                doomed = ident(item)
                current = [live for live in current if not (merge_key in live and _json_equal(live[merge_key], doomed))]
            elif item[PATCH_DIRECTIVE] == "replace":
                replace = True
            else:
                raise PatchError(f"unsupported $patch directive {item[PATCH_DIRECTIVE]!r} in a list", code=400)
        if replace:
            return [self.merge_map({}, item, items) for item in plain]
        merged = list(current)
        for item in plain:
            wanted = ident(item)
            position = next(
                (at for at, live in enumerate(merged) if merge_key in live and _json_equal(live[merge_key], wanted)), -1
            )
            if position >= 0:
                merged[position] = self.merge_map(merged[position], item, items)
            else:
                merged.append(self.merge_map({}, item, items))
        return self.normalize_order(merged, plain, current, ident)

    def normalize_order(self, merged: list, order: list, server: list, ident: Callable[[Any], Any]) -> list:
        """Order a merged list like ``normalizeElementOrder``: items named in `order` follow it, the others keep
        their live (`server`) order, and both are interleaved by live position."""
        order_ids = [ident(item) for item in order]
        server_ids = [ident(item) for item in server]
        named = [item for item in merged if _index(order_ids, ident(item)) >= 0]
        others = [item for item in merged if _index(order_ids, ident(item)) < 0]
        named.sort(key=lambda item: _index(order_ids, ident(item)))
        others.sort(key=lambda item: _index(server_ids, ident(item)) % (len(server_ids) + 1))
        return _merge_sorted(others, named, server_ids, ident)

    def apply_element_orders(self, target: dict, patch: dict, schema: dict | None) -> set[str]:
        """``$setElementOrder/<field>``: merge the field's list and order it as listed; return the fields done."""
        handled: set[str] = set()
        for key, order in patch.items():
            if not key.startswith(SET_ELEMENT_ORDER_PREFIX):
                continue
            name = key[len(SET_ELEMENT_ORDER_PREFIX) :]
            if not name or not isinstance(order, list):
                raise PatchError(f"{key!r} must name a field and hold a list", code=400)
            patch_list = patch.get(name)
            if name in patch and not isinstance(patch_list, list):
                continue  # null or a non-list: the ordinary merge below deals with the field
            current = target.get(name)
            current = current if isinstance(current, list) else None
            if current is None and patch_list is None:
                continue
            field = self.field(schema, name)
            ident = self.order_ident(field, [*(current or []), *(patch_list or []), *order])
            if patch_list is not None:
                self.check_order(patch_list, order, ident)
                merged = self.merge_list(current or [], patch_list, field)
                handled.add(name)
            else:
                merged = current or []
            target[name] = self.normalize_order(merged, order, current or [], ident)
        return handled

    @staticmethod
    def order_ident(field: _Field, samples: list) -> Callable[[Any], Any]:
        """How list items are identified for ordering: by merge key for objects, by value otherwise."""
        merge_key = field.merge_key
        if not merge_key or not any(isinstance(item, dict) for item in samples):
            return lambda item: item

        def ident(item: Any) -> Any:
            if not isinstance(item, dict) or merge_key not in item:
                raise PatchError(f"list item {item!r} has no merge key {merge_key!r}")
            return item[merge_key]

        return ident

    @staticmethod
    def check_order(patch_list: list, order: list, ident: Callable[[Any], Any]) -> None:
        """The patch list's items (deletions aside) must appear in `order`, in the same relative order."""
        wanted = [item for item in patch_list if not (isinstance(item, dict) and PATCH_DIRECTIVE in item)]
        position = 0
        for item in wanted:
            while position < len(order) and not _json_equal(ident(order[position]), ident(item)):
                position += 1
            if position == len(order):
                raise PatchError("the order in the patch list does not match its $setElementOrder list")
            position += 1


def strategic_merge_patch(target: dict, patch: dict, definitions: dict[str, dict], root: str | None) -> dict:
    """Apply a Kubernetes strategic merge patch to `target` and return the result as a new object.

    `definitions` maps definition names to JSON-schema objects (the ``$defs`` of kubernetes-validate's
    ``_definitions.json``) and `root` names the definition of the top-level object (for example
    ``io.k8s.api.apps.v1.Deployment``). Lists whose property carries ``x-kubernetes-patch-strategy: merge`` merge
    by their ``x-kubernetes-patch-merge-key`` (or as a set when they hold primitives); other lists are replaced;
    maps merge recursively and ``null`` deletes. Without schema information (unknown fields, `root` None, custom
    resources) maps merge like JSON merge patch and lists are replaced. Directive keys never reach the result.
    """
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object", code=400)
    merger = _StrategicMerger(definitions)
    schema = merger.resolve({"$ref": f"#/$defs/{root}"}) if root else None
    result = merger.merge_map(copy.deepcopy(target) if isinstance(target, dict) else {}, patch, schema)
    return {} if result is _DELETED else result
