"""Label and field selectors as the Kubernetes API server parses and matches them.

Three entry points, for the API-server emulator:

- ``parse_label_selector(text)`` parses ``?labelSelector=`` (already URL-decoded) into a predicate over a labels map;
- ``parse_field_selector(text)`` parses ``?fieldSelector=`` into a predicate over a whole object (a JSON dict);
- ``match_label_selector(selector, labels)`` evaluates a ``metav1.LabelSelector`` object
  (``matchLabels`` / ``matchExpressions``) as Deployment, ReplicaSet, PodDisruptionBudget or NetworkPolicy use it.

Every syntax or value error raises ``SelectorError`` (a ``ValueError``) whose message follows the API server's own
wording; the emulator answers 400 BadRequest with it.

Label selectors are a port of the lexer and recursive-descent parser of ``labels.Parse``, so the corner cases agree
with the real server rather than with a regular expression:

- requirements: ``key`` (exists), ``!key`` (does not exist), ``key=v``, ``key==v``, ``key!=v``,
  ``key in (v1,v2)``, ``key notin (v1,v2)``, and the numeric ``key>n`` / ``key<n`` (Gt/Lt) the server accepts too;
- blanks (space, tab, CR, LF only) may surround any token; ``in`` / ``notin`` are keywords only where an operator
  is expected, so ``in in (in)`` is valid;
- a value may be empty (``a=``, ``a in ()``, ``a in (,b)``); ``a=b=c`` is an error (``=`` after a requirement);
- ``!=`` and ``notin`` also match objects without the key; ``=``, ``in``, ``>`` and ``<`` need it;
- keys are qualified names (optional DNS-1123 subdomain prefix of at most 253 bytes, ``/``, a name of at most 63
  bytes of ``[A-Za-z0-9_.-]`` starting and ending alphanumeric); values are empty or follow the name rule;
- an input that is empty or blank selects everything; a NUL character ends the input, as the Go lexer reads
  byte 0 as end of string.

Field selectors follow ``fields.ParseSelector``: comma-separated ``path=value``, ``path==value`` or ``path!=value``
terms split at the first operator; ``\\,``, ``\\=`` and ``\\\\`` are the only escapes in a value, and an unescaped
``,`` or ``=`` in a value is an error; empty terms are skipped. The real server then accepts only the field labels
each resource registers (``metadata.name``, ``metadata.namespace``, ``status.phase``, ``spec.nodeName``...); the
emulator accepts any dotted path of ``[A-Za-z0-9_-]`` segments and reads it from the object, a missing field
comparing as ``""``, booleans as ``true`` / ``false`` and numbers in decimal.

Sources:

- k8s.io/apimachinery/pkg/labels/selector.go (Lexer, Parser, ``NewRequirement``, ``Requirement.Matches``):
  https://github.com/kubernetes/apimachinery/blob/master/pkg/labels/selector.go
- k8s.io/apimachinery/pkg/fields/selector.go (``splitTerms``, ``splitTerm``, ``UnescapeValue``):
  https://github.com/kubernetes/apimachinery/blob/master/pkg/fields/selector.go
- k8s.io/apimachinery/pkg/api/validate/content/kube.go (``IsLabelKey``, ``IsLabelValue``) and
  k8s.io/apimachinery/pkg/util/validation/validation.go (``IsDNS1123Subdomain``)
- k8s.io/apimachinery/pkg/apis/meta/v1/helpers.go (``LabelSelectorAsSelector``: nil matches nothing, empty matches
  everything, operators ``In``, ``NotIn``, ``Exists``, ``DoesNotExist``)
- https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/ ("Labels and Selectors")
- https://kubernetes.io/docs/concepts/overview/working-with-objects/field-selectors/ ("Field Selectors")
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["SelectorError", "match_label_selector", "parse_field_selector", "parse_label_selector"]


class SelectorError(ValueError):
    """Invalid selector syntax or value; the API server answers 400 BadRequest with this message."""


# --------------------------------------------------------------------------------------------------------------------
# Validation of label keys and values (content.IsLabelKey / IsLabelValue, validation.IsDNS1123Subdomain)
# --------------------------------------------------------------------------------------------------------------------

_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_NAME_RE = re.compile(_NAME_FMT)
_NAME_MAX = 63
_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_VALUE_FMT = f"({_NAME_FMT})?"
_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_FMT = _DNS_LABEL_FMT + r"(\." + _DNS_LABEL_FMT + ")*"
_SUBDOMAIN_RE = re.compile(_SUBDOMAIN_FMT)
_SUBDOMAIN_MAX = 253
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_INT64_RE = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """Word a pattern mismatch as validation.RegexError does."""
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def _max_len_error(length: int) -> str:
    """Word a length overflow as validation.MaxLenError does."""
    return f"must be no more than {length} bytes"


def _nbytes(text: str) -> int:
    """Length as Go's len(): UTF-8 bytes."""
    return len(text.encode("utf-8", "surrogatepass"))


def _go_quote(value: Any) -> str:
    """Render a bad value the way field.Error quotes it (strings quoted, string lists Go-style)."""
    if isinstance(value, list):
        return "[]string{" + ", ".join(json.dumps(item) for item in value) + "}"
    return json.dumps(value, ensure_ascii=False)


def _invalid(path: str, value: Any, detail: str) -> str:
    """Format a field.Invalid error; the parser passes a nil path, which Go prints as "<nil>"."""
    return f"{path}: Invalid value: {_go_quote(value)}: {detail}"


def _label_key_errors(key: str) -> list[str]:
    """Return IsLabelKey's complaints about ``key`` (empty when the key is valid)."""
    errs: list[str] = []
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if _nbytes(prefix) > _SUBDOMAIN_MAX:
                errs.append("prefix part " + _max_len_error(_SUBDOMAIN_MAX))
            if not _SUBDOMAIN_RE.fullmatch(prefix):
                errs.append("prefix part " + _regex_error(_SUBDOMAIN_MSG, _SUBDOMAIN_FMT, "example.com"))
    else:
        return [
            "a valid label key "
            + _regex_error(_NAME_MSG, _NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif _nbytes(name) > _NAME_MAX:
        errs.append("name part " + _max_len_error(_NAME_MAX))
    if not _NAME_RE.fullmatch(name):
        errs.append("name part " + _regex_error(_NAME_MSG, _NAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def _label_value_errors(value: str) -> list[str]:
    """Return IsLabelValue's complaints about ``value`` (empty when the value is valid)."""
    errs: list[str] = []
    if _nbytes(value) > _NAME_MAX:
        errs.append(_max_len_error(_NAME_MAX))
    if value and not _NAME_RE.fullmatch(value):
        errs.append(_regex_error(_VALUE_MSG, _VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _parse_int64(text: str) -> int | None:
    """Parse as Go's strconv.ParseInt(text, 10, 64); None where Go returns an error."""
    if not _INT64_RE.fullmatch(text):
        return None
    number = int(text)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


# --------------------------------------------------------------------------------------------------------------------
# Requirements (labels.Requirement) and the matcher objects handed back to callers
# --------------------------------------------------------------------------------------------------------------------

# selection.Operator spellings, as the Go constants read.
_IN, _NOT_IN, _EQUALS, _DOUBLE_EQUALS, _NOT_EQUALS = "in", "notin", "=", "==", "!="
_EXISTS, _DOES_NOT_EXIST, _GT, _LT = "exists", "!", "gt", "lt"
_BINARY_OPERATORS = (_IN, _NOT_IN, _EQUALS, _DOUBLE_EQUALS, _NOT_EQUALS, _GT, _LT)


@dataclass(frozen=True)
class _Requirement:
    """One validated label requirement: ``key``, an operator constant and the (deduplicated) values."""

    key: str
    operator: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Apply Requirement.Matches: NotIn / != also hold when the key is absent."""
        present = self.key in labels
        if self.operator in (_IN, _EQUALS, _DOUBLE_EQUALS):
            return present and labels[self.key] in self.values
        if self.operator in (_NOT_IN, _NOT_EQUALS):
            return not present or labels[self.key] not in self.values
        if self.operator == _EXISTS:
            return present
        if self.operator == _DOES_NOT_EXIST:
            return not present
        return present and self._compare(labels[self.key])

    def _compare(self, label: str) -> bool:
        """Gt / Lt: the label must hold an integer; NewRequirement guaranteed one integer value."""
        have = _parse_int64(label)
        if have is None:
            return False
        want = int(next(iter(self.values)))
        return have > want if self.operator == _GT else have < want


def _new_requirement(key: str, operator: str, values: list[str]) -> _Requirement:
    """Validate like labels.NewRequirement (with a nil field path) and build the requirement."""
    errs: list[str] = []
    key_errs = _label_key_errors(key)
    if key_errs:
        errs.append(_invalid("key", key, "; ".join(key_errs)))
    errs.extend(_operator_value_errors(operator, values))
    for index, value in enumerate(values):
        value_errs = _label_value_errors(value)
        if value_errs:
            errs.append(_invalid(f"values[{index}][{key}]", value, "; ".join(value_errs)))
    if errs:
        raise SelectorError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
    return _Requirement(key, operator, frozenset(values))


def _operator_value_errors(operator: str, values: list[str]) -> list[str]:
    """Check the number (and, for Gt / Lt, the form) of values an operator takes."""
    errs: list[str] = []
    if operator in (_IN, _NOT_IN):
        if not values:
            errs.append(_invalid("values", values, "for 'in', 'notin' operators, values set can't be empty"))
    elif operator in (_EQUALS, _DOUBLE_EQUALS, _NOT_EQUALS):
        if len(values) != 1:
            errs.append(_invalid("values", values, "exact-match compatibility requires one single value"))
    elif operator in (_EXISTS, _DOES_NOT_EXIST):
        if values:
            errs.append(_invalid("values", values, "values set must be empty for exists and does not exist"))
    elif operator in (_GT, _LT):
        if len(values) != 1:
            errs.append(_invalid("values", values, "for 'Gt', 'Lt' operators, exactly one value is required"))
        for index, value in enumerate(values):
            if _parse_int64(value) is None:
                errs.append(
                    _invalid(f"values[{index}]", value, "for 'Gt', 'Lt' operators, the value must be an integer")
                )
    else:  # pragma: no cover - the callers only pass the constants above
        raise SelectorError(f"operator: Unsupported value: {operator!r}")
    return errs


class _LabelMatcher:
    """A parsed label selector: call it with a labels map; all requirements must hold (AND)."""

    def __init__(self, requirements: list[_Requirement] | None) -> None:
        self.requirements: tuple[_Requirement, ...] = tuple(requirements or ())

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (``""``, or ``{}`` as a LabelSelector)."""
        return not self.requirements

    def __call__(self, labels: Mapping[str, str] | None) -> bool:
        """Return whether ``labels`` (None meaning no labels) satisfies every requirement."""
        present = labels if labels is not None else {}
        return all(requirement.matches(present) for requirement in self.requirements)

    def __repr__(self) -> str:
        """Show the requirements, for test failure messages."""
        return f"_LabelMatcher({list(self.requirements)!r})"


# --------------------------------------------------------------------------------------------------------------------
# Label selector lexer and parser (a port of labels.Lexer and labels.Parser)
# --------------------------------------------------------------------------------------------------------------------

# Token kinds. Punctuation tokens are named by their own text.
_T_EOS, _T_IDENT, _T_IN, _T_NOTIN = "end of string", "identifier", "in", "notin"
_KEYWORDS = {"in": _T_IN, "notin": _T_NOTIN}
_SYMBOLS = frozenset({")", ",", "!", "==", "=", ">", "<", "!=", "("})
_SPECIAL = frozenset("=!(),><")
_BLANK = frozenset(" \t\r\n")
_NUL = "\0"

# Binary operator tokens and the operators they stand for.
_OPERATOR_TOKENS = {
    _T_IN: _IN,
    _T_NOTIN: _NOT_IN,
    "=": _EQUALS,
    "==": _DOUBLE_EQUALS,
    "!=": _NOT_EQUALS,
    ">": _GT,
    "<": _LT,
}

# Parser contexts: in VALUES, the keywords `in` and `notin` read as identifiers.
_KEY_AND_OPERATOR, _VALUES = 0, 1


class _Lexer:
    """Byte-at-a-time scanner mirroring labels.Lexer, including its reading of NUL as end of input."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _read(self) -> str:
        if self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            return char
        return _NUL

    def _unread(self) -> None:
        self.pos -= 1

    def _scan_id_or_keyword(self) -> tuple[str, str]:
        chars: list[str] = []
        while True:
            char = self._read()
            if char == _NUL:
                break
            if char in _SPECIAL or char in _BLANK:
                self._unread()
                break
            chars.append(char)
        word = "".join(chars)
        return _KEYWORDS.get(word, _T_IDENT), word

    def _scan_special_symbol(self) -> tuple[str, str]:
        # Longest run of special characters that is still a known symbol: "!=" and "==" win over "!" and "=".
        last = ""
        buffer = ""
        while True:
            char = self._read()
            if char == _NUL:
                break
            if char not in _SPECIAL:
                self._unread()
                break
            buffer += char
            if buffer in _SYMBOLS:
                last = buffer
            elif last:
                self._unread()
                break
        return last, last  # every single special character is a symbol, so `last` is never empty here

    def lex(self) -> tuple[str, str]:
        """Return the next (kind, literal) pair."""
        char = self._read()
        while char in _BLANK:
            char = self._read()
        if char == _NUL:
            return _T_EOS, ""
        self._unread()
        if char in _SPECIAL:
            return self._scan_special_symbol()
        return self._scan_id_or_keyword()


class _Parser:
    """Recursive-descent parser mirroring labels.Parser; raises SelectorError with the server's wording."""

    def __init__(self, text: str) -> None:
        lexer = _Lexer(text)
        self.items: list[tuple[str, str]] = []
        while True:
            item = lexer.lex()
            self.items.append(item)
            if item[0] == _T_EOS:
                break
        self.position = 0

    def _lookahead(self, context: int) -> tuple[str, str]:
        kind, literal = self.items[self.position]
        if context == _VALUES and kind in (_T_IN, _T_NOTIN):
            kind = _T_IDENT
        return kind, literal

    def _consume(self, context: int) -> tuple[str, str]:
        item = self._lookahead(context)
        self.position += 1
        return item

    def parse(self) -> list[_Requirement]:
        """Parse the whole input into requirements."""
        requirements: list[_Requirement] = []
        while True:
            kind, literal = self._lookahead(_VALUES)
            if kind == _T_EOS:
                return requirements
            if kind not in (_T_IDENT, "!"):
                raise SelectorError(f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._parse_requirement())
            except SelectorError as exc:
                raise SelectorError(f"unable to parse requirement: {exc}") from None
            kind, literal = self._consume(_VALUES)
            if kind == _T_EOS:
                return requirements
            if kind != ",":
                raise SelectorError(f"found '{literal}', expected: ',' or 'end of string'")
            kind, literal = self._lookahead(_VALUES)
            if kind not in (_T_IDENT, "!"):
                raise SelectorError(f"found '{literal}', expected: identifier after ','")

    def _parse_requirement(self) -> _Requirement:
        key, operator = self._parse_key_and_infer_operator()
        if operator in (_EXISTS, _DOES_NOT_EXIST):
            return _new_requirement(key, operator, [])
        operator = self._parse_operator()
        values = self._parse_values() if operator in (_IN, _NOT_IN) else self._parse_exact_value()
        return _new_requirement(key, operator, sorted(values))

    def _parse_key_and_infer_operator(self) -> tuple[str, str]:
        operator = ""
        kind, literal = self._consume(_VALUES)
        if kind == "!":
            operator = _DOES_NOT_EXIST
            kind, literal = self._consume(_VALUES)
        if kind != _T_IDENT:
            raise SelectorError(f"found '{literal}', expected: identifier")
        key_errs = _label_key_errors(literal)
        if key_errs:
            raise SelectorError(_invalid("<nil>", literal, "; ".join(key_errs)))
        if self._lookahead(_VALUES)[0] in (_T_EOS, ",") and operator != _DOES_NOT_EXIST:
            operator = _EXISTS
        return literal, operator

    def _parse_operator(self) -> str:
        kind, literal = self._consume(_KEY_AND_OPERATOR)
        if kind not in _OPERATOR_TOKENS:  # "!" included: it is unary, not binary
            raise SelectorError(f"found '{literal}', expected: {', '.join(_BINARY_OPERATORS)}")
        return _OPERATOR_TOKENS[kind]

    def _parse_values(self) -> set[str]:
        kind, literal = self._consume(_VALUES)
        if kind != "(":
            raise SelectorError(f"found '{literal}' expected: '('")
        kind, literal = self._lookahead(_VALUES)
        if kind in (_T_IDENT, ","):
            values = self._parse_identifiers_list()
            self._consume(_VALUES)  # the list only returns on a ")"
            return values
        if kind == ")":  # "()" is the set holding the empty value
            self._consume(_VALUES)
            return {""}
        raise SelectorError(f"found '{literal}', expected: ',', ')' or identifier")

    def _parse_identifiers_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            kind, literal = self._consume(_VALUES)
            if kind == _T_IDENT:
                values.add(literal)
                next_kind, next_literal = self._lookahead(_VALUES)
                if next_kind == ",":
                    continue
                if next_kind == ")":
                    return values
                raise SelectorError(f"found '{next_literal}', expected: ',' or ')'")
            if kind == ",":  # "(," ",," and ",)" each stand for an empty value
                if not values:
                    values.add("")
                next_kind = self._lookahead(_VALUES)[0]
                if next_kind == ")":
                    values.add("")
                    return values
                if next_kind == ",":
                    self._consume(_VALUES)
                    values.add("")
                continue
            raise SelectorError(f"found '{literal}', expected: ',', or identifier")

    def _parse_exact_value(self) -> set[str]:
        kind = self._lookahead(_VALUES)[0]
        if kind in (_T_EOS, ","):
            return {""}
        kind, literal = self._consume(_VALUES)
        if kind == _T_IDENT:
            return {literal}
        raise SelectorError(f"found '{literal}', expected: identifier")


def parse_label_selector(text: str) -> Callable[[dict[str, str]], bool]:
    """Parse a ``labelSelector`` query value into a predicate over a labels map.

    Grammar (labels.Parse): comma-separated requirements ``key``, ``!key``, ``key=value``, ``key==value``,
    ``key!=value``, ``key in (a,b)``, ``key notin (a,b)``, ``key>1``, ``key<1``; blanks around tokens are ignored.
    ``""`` selects everything. ``!=`` and ``notin`` also match label maps without the key.

    Raises:
        SelectorError: on a syntax error, an invalid key or value, or a non-integer Gt/Lt operand; the message
            names the offending token or key/value as the API server does.
    """
    if not isinstance(text, str):
        raise SelectorError(f"label selector must be a string, not {type(text).__name__}")
    return _LabelMatcher(_Parser(text).parse())


# --------------------------------------------------------------------------------------------------------------------
# Field selectors (fields.ParseSelector)
# --------------------------------------------------------------------------------------------------------------------

_FIELD_OPERATORS = ("!=", "==", "=")  # tried in this order at each position, so "==" never leaves "=" in the value
_FIELD_PATH_RE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


@dataclass(frozen=True)
class _FieldTerm:
    """One field requirement: ``path`` compared (``==`` or ``!=``) with ``value``."""

    path: str
    operator: str
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Compare the field's string form with the value."""
        equal = _field_value(obj, self.path) == self.value
        return equal if self.operator == "==" else not equal


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    """Read a dotted path from ``obj`` as the string the server's field set would hold ("" when absent)."""
    current: Any = obj
    for segment in path.split("."):
        if not isinstance(current, Mapping) or segment not in current:
            return ""
        current = current[segment]
    if isinstance(current, bool):
        return "true" if current else "false"
    if isinstance(current, str):
        return current
    if isinstance(current, int | float):
        return str(current)
    return ""  # None, or a list / map: no scalar value to compare


class _FieldMatcher:
    """A parsed field selector: call it with an object; all terms must hold (AND)."""

    def __init__(self, terms: list[_FieldTerm]) -> None:
        self.terms: tuple[_FieldTerm, ...] = tuple(terms)

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything."""
        return not self.terms

    def __call__(self, obj: Mapping[str, Any] | None) -> bool:
        """Return whether ``obj`` satisfies every term."""
        present = obj if obj is not None else {}
        return all(term.matches(present) for term in self.terms)

    def __repr__(self) -> str:
        """Show the terms, for test failure messages."""
        return f"_FieldMatcher({list(self.terms)!r})"


def _split_terms(text: str) -> list[str]:
    """Split at commas not escaped by a backslash, keeping the escapes (fields.splitTerms)."""
    if not text:
        return []
    terms: list[str] = []
    start = 0
    escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(text[start:index])
            start = index + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    """Split a term at the first operator found scanning left to right (fields.splitTerm)."""
    for index in range(len(term)):
        for operator in _FIELD_OPERATORS:
            if term.startswith(operator, index):
                return term[:index], operator, term[index + len(operator) :]
    return None


def _unescape_value(text: str) -> str:
    """Undo ``\\\\``, ``\\,`` and ``\\=`` escapes; reject other escapes and bare ``,`` / ``=`` (UnescapeValue)."""
    out: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            if char not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{char}")
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(char)} ({char!r})")
        else:
            out.append(char)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def parse_field_selector(text: str) -> Callable[[dict], bool]:
    """Parse a ``fieldSelector`` query value into a predicate over an object.

    Terms are comma-separated ``path=value``, ``path==value`` or ``path!=value``; ``path`` is a dotted path into the
    object (``metadata.name``, ``status.phase``, ``spec.nodeName``) and a missing field compares as ``""``. Values may
    escape ``\\,``, ``\\=`` and ``\\\\``. ``""`` (or only empty terms) selects everything.

    Raises:
        SelectorError: on a term without an operator, an invalid escape or bare ``,`` / ``=`` in a value, or a path
            that is not a dotted field path.
    """
    if not isinstance(text, str):
        raise SelectorError(f"field selector must be a string, not {type(text).__name__}")
    terms: list[_FieldTerm] = []
    for part in sorted(_split_terms(text)):  # the server sorts the terms, so it reports errors in that order
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        path, operator, raw_value = split
        terms.append(_FieldTerm(path, "!=" if operator == "!=" else "==", _unescape_value(raw_value)))
    for term in terms:  # field labels are checked after parsing, as the server's conversion step does
        if not _FIELD_PATH_RE.fullmatch(term.path):
            raise SelectorError(f'"{term.path}" is not a known field selector: expected a dotted field path')
    return _FieldMatcher(terms)


# --------------------------------------------------------------------------------------------------------------------
# metav1.LabelSelector objects (metav1.LabelSelectorAsSelector)
# --------------------------------------------------------------------------------------------------------------------

_EXPRESSION_OPERATORS = {"In": _IN, "NotIn": _NOT_IN, "Exists": _EXISTS, "DoesNotExist": _DOES_NOT_EXIST}


def _string_list(values: Any, where: str) -> list[str]:
    """Check that a matchExpressions ``values`` entry is a list of strings (None meaning empty)."""
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
        raise SelectorError(f"{where}: values must be a list of strings, got {values!r}")
    return list(values)


def _selector_requirements(selector: Mapping[str, Any]) -> list[_Requirement]:
    """Validate a LabelSelector object and turn it into requirements, as LabelSelectorAsSelector does."""
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not isinstance(match_labels, Mapping):
        raise SelectorError(f"matchLabels must be a map of strings, got {match_labels!r}")
    if not isinstance(expressions, list):
        raise SelectorError(f"matchExpressions must be a list, got {expressions!r}")
    requirements: list[_Requirement] = []
    for key, value in match_labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SelectorError(f"matchLabels must map strings to strings, got {key!r}: {value!r}")
        requirements.append(_new_requirement(key, _EQUALS, [value]))
    for index, expression in enumerate(expressions):
        where = f"matchExpressions[{index}]"
        if not isinstance(expression, Mapping):
            raise SelectorError(f"{where} must be a map, got {expression!r}")
        operator = expression.get("operator", "")
        if operator not in _EXPRESSION_OPERATORS:
            raise SelectorError(f"{_go_quote(operator)} is not a valid label selector operator")
        key = expression.get("key", "")
        if not isinstance(key, str):
            raise SelectorError(f"{where}: key must be a string, got {key!r}")
        values = _string_list(expression.get("values"), where)
        requirements.append(_new_requirement(key, _EXPRESSION_OPERATORS[operator], values))
    return requirements


def match_label_selector(selector: dict | None, labels: dict[str, str] | None) -> bool:
    """Evaluate a ``metav1.LabelSelector`` object against a labels map (None meaning no labels).

    ``matchLabels`` entries and ``matchExpressions`` (operators ``In``, ``NotIn``, ``Exists``, ``DoesNotExist``)
    must all hold. A None selector matches nothing; a selector with no requirements (``{}``) matches everything.
    The selector is validated in full before matching, whatever the labels.

    Raises:
        SelectorError: on an unknown operator, an invalid key or value, ``In`` / ``NotIn`` without values,
            ``Exists`` / ``DoesNotExist`` with values, or a malformed structure.
    """
    if selector is None:
        return False
    if not isinstance(selector, Mapping):
        raise SelectorError(f"a label selector must be a map, got {selector!r}")
    return _LabelMatcher(_selector_requirements(selector))(labels)
