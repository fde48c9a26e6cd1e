"""Reading manifest files as kubectl reads them.

kubectl splits a file into documents at lines that start with `---`, turns each YAML
document into JSON with go-yaml v2's YAML 1.1 rules (`sigs.k8s.io/yaml`), and decodes that
JSON into int64 and float64 numbers before it sends it. `read` does the same, so that a
value means the same thing to `flywheel validate` and to the API server:

>>> read(b"name: n\\nsize: 1e3\\nwhen: 2026-01-01\\nmode: 0755\\n")[0].value
{'name': False, 'size': 1000, 'when': '2026-01-01', 'mode': 493}

Where that reading is not what a YAML 1.2 reader (or a person) would expect, the
`Document` remembers the text it came from, for error messages that give the fix.

It also refuses early what kubectl refuses, or what would hang or blow up: a file over
`MAX_FILE_BYTES`, text that is not UTF-8, a document nested deeper than `MAX_DEPTH`, a
recursive alias, an alias bomb (more than `MAX_VALUES` values once aliases are expanded,
or go-yaml's own "excessive aliasing" ratio), NaN and infinities (JSON has no such
numbers), non-text mapping keys and duplicate keys.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import decimal
import json
import math
import re
from typing import Any

import yaml

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_VALUES = 100_000

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
UINT64_MAX = 2**64 - 1

Path = tuple[str | int, ...]

_Parser: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: what go-yaml ports


class ReadError(Exception):
    """A file or document kubectl cannot read (or Flywheel refuses to); `line` is from 1."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclasses.dataclass(frozen=True)
class Reading:
    """An unquoted scalar that kubectl reads as something other than its text."""

    text: str
    value: Any

    def describe(self) -> str:
        """How kubectl reads it, e.g. "the unquoted n as the boolean false"."""
        return f"the unquoted {self.text!r} as {_kind_of(self.value)}"


@dataclasses.dataclass
class Document:
    index: int  # from 1, counting only documents with content, as kubectl does
    line: int  # where it starts in the file, from 1
    value: Any  # JSON data: dict, list, str, int (int64), float, bool or None
    lines: dict[Path, int] = dataclasses.field(default_factory=dict)
    readings: dict[Path, Reading] = dataclasses.field(default_factory=dict)

    def line_of(self, path: Path) -> int:
        """The line of the value at `path`, or of its nearest ancestor that has one."""
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return self.line


def read(data: bytes) -> list[Document]:
    """The documents of one file, as kubectl would send them (null documents skipped)."""
    if len(data) > MAX_FILE_BYTES:
        raise ReadError(
            f"the file is {len(data)} bytes, over the {MAX_FILE_BYTES} allowed; "
            "a manifest is hand-written text, split it or fix what generated it"
        )
    text = _decode(data)
    if text.lstrip()[:1] == "{":
        try:
            return _read_json_stream(text)
        except ReadError:
            pass  # kubectl, too, reads what is not JSON again as YAML
    documents: list[Document] = []
    for line, chunk in _split_documents(text):
        doc = _Builder(chunk, line).document()
        if doc is not None:
            doc.index = len(documents) + 1
            documents.append(doc)
    return documents


def read_json(text: str) -> Any:
    """One JSON value, with the numbers kubectl would send (for `$FLYWHEEL_MANIFEST`)."""
    try:
        value, end = _json_decoder().raw_decode(text.strip())
    except json.JSONDecodeError as exc:
        raise ReadError(f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except _JSONValueError as exc:
        raise ReadError(str(exc)) from None
    if end != len(text.strip()):
        raise ReadError("not valid JSON: extra data after the value")
    return value


# --- bytes -> text --------------------------------------------------------------------


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data[:2] in (b"\xff\xfe", b"\xfe\xff") or data[:4] in (b"\0\0\xfe\xff",):
        raise ReadError("the file is UTF-16 or UTF-32; save it as UTF-8")
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        raise ReadError("this is a binary file (it holds NUL bytes), not a YAML manifest", line)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ReadError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot start or continue a "
            "character; save the file as UTF-8",
            line,
        ) from None


def _split_documents(text: str) -> list[tuple[int, str]]:
    """Chunks between `---` lines, as kubectl's YAMLReader cuts them: (first line, text)."""
    chunks: list[tuple[int, str]] = []
    current: list[str] = []
    start = 1
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.startswith("---"):
            rest = line[3:].strip()
            if rest and not rest.startswith("#"):
                raise ReadError(
                    f"kubectl accepts only a comment after a document separator, not "
                    f"{_short(rest)!r}; put it on the next line",
                    number,
                )
            if current:
                chunks.append((start, "".join(current)))
            current, start = [], number + 1
            continue
        current.append(line)
    if current:
        chunks.append((start, "".join(current)))
    return chunks


# --- YAML events -> JSON data ---------------------------------------------------------


class _Builder:
    """Builds one document from libyaml's events with go-yaml v2's rules.

    Aliases share the value of their anchor (nothing is copied); `decoded` and `aliased`
    count values as go-yaml's decoder would visit them after expansion, so its
    "excessive aliasing" rule and `MAX_VALUES` are checked before anything is expanded.
    """

    def __init__(self, text: str, first_line: int) -> None:
        self.text = text
        self.offset = first_line - 1
        self.anchors: dict[str, tuple[Any, int]] = {}  # name -> (value, expanded size)
        self.open_anchors: set[str] = set()
        self.decoded = 0
        self.aliased = 0
        self.doc = Document(index=0, line=first_line, value=None)

    def document(self) -> Document | None:
        parser = _Parser(self.text)
        try:
            parser.get_event()  # stream start
            if parser.check_event(yaml.StreamEndEvent):
                return None
            start = parser.get_event()
            self.doc.line = start.start_mark.line + 1 + self.offset
            self.count(1)
            value, _ = self.node(parser, (), 0)
            parser.get_event()  # document end
            if not parser.check_event(yaml.StreamEndEvent):
                mark = parser.peek_event().start_mark
                raise ReadError(
                    "a second document follows without a `---` line (after `...`?); "
                    "kubectl would ignore it: separate documents with `---`",
                    mark.line + 1 + self.offset,
                )
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 + self.offset if mark else None
            problem = exc.problem or exc.context or "syntax error"
            if "expected <document start>" in problem:
                problem += "; after a `...` line a new document needs `---`"
            column = f" (column {mark.column + 1})" if mark else ""
            raise ReadError(f"not valid YAML: {problem}{column}", line) from None
        except yaml.YAMLError as exc:
            raise ReadError(f"not valid YAML: {exc}") from None
        finally:
            parser.dispose()
        if value is None:
            return None  # kubectl skips empty and null documents
        self.doc.value = value
        return self.doc

    def count(self, n: int, aliased: bool = False) -> None:
        self.decoded += n
        if aliased:
            self.aliased += n
        if self.decoded > MAX_VALUES:
            raise ReadError(
                f"the document holds more than {MAX_VALUES} values once its aliases are "
                "expanded; a manifest this large is refused"
            )
        if (
            self.aliased > 100
            and self.decoded > 1000
            and self.aliased / self.decoded > _allowed_alias_ratio(self.decoded)
        ):
            raise ReadError(
                "the document contains excessive aliasing (an alias bomb?); kubectl refuses it"
            )

    def node(self, parser: Any, path: Path, depth: int) -> tuple[Any, int]:
        """The value of the next node and its size once aliases are expanded."""
        event = parser.get_event()
        line = event.start_mark.line + 1 + self.offset
        if isinstance(event, yaml.AliasEvent):
            return self.alias(str(event.anchor), line)
        if depth > MAX_DEPTH:
            raise ReadError(f"the document is nested deeper than {MAX_DEPTH} levels", line)
        self.doc.lines.setdefault(path, line)
        anchor = event.anchor
        if anchor is not None:
            self.open_anchors.add(anchor)
        if isinstance(event, yaml.ScalarEvent):
            self.count(1)
            value = self.scalar(event, path, line)
            size = 1
        elif isinstance(event, yaml.SequenceStartEvent):
            self.check_collection_tag(event.tag, "tag:yaml.org,2002:seq", line)
            self.count(1)
            value, size = self.sequence(parser, path, depth)
        elif isinstance(event, yaml.MappingStartEvent):
            self.check_collection_tag(event.tag, "tag:yaml.org,2002:map", line)
            self.count(1)
            value, size = self.mapping(parser, path, depth)
        else:  # pragma: no cover - libyaml emits only these inside a document
            raise ReadError(f"unexpected YAML event {type(event).__name__}", line)
        if anchor is not None:
            self.open_anchors.discard(anchor)
            self.anchors[anchor] = (value, size)
        return value, size

    def alias(self, name: str, line: int) -> tuple[Any, int]:
        if name in self.open_anchors:
            raise ReadError(f"the anchor &{name} contains an alias to itself (*{name})", line)
        if name not in self.anchors:
            raise ReadError(f"the alias *{name} names no anchor defined before it", line)
        value, size = self.anchors[name]
        self.count(1)
        self.count(size, aliased=True)
        return value, size + 1

    def sequence(self, parser: Any, path: Path, depth: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        size = 1
        while not parser.check_event(yaml.SequenceEndEvent):
            value, n = self.node(parser, (*path, len(items)), depth + 1)
            items.append(value)
            size += n
        parser.get_event()
        return items, size

    def mapping(self, parser: Any, path: Path, depth: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        explicit: set[str] = set()
        size = 1
        while not parser.check_event(yaml.MappingEndEvent):
            key_event = parser.peek_event()
            line = key_event.start_mark.line + 1 + self.offset
            if _is_merge_key(key_event):
                parser.get_event()
                merged, n = self.node(parser, (*path, "<<"), depth + 1)
                self.merge(out, merged, line)
                size += n
                continue
            if not isinstance(key_event, yaml.ScalarEvent):
                raise ReadError("a mapping key must be text, not a list or a mapping", line)
            key_value, n = self.node(parser, (*path, "<key>"), depth + 1)
            self.doc.lines.pop((*path, "<key>"), None)
            self.doc.readings.pop((*path, "<key>"), None)
            key = _key_text(key_value, key_event.value, line)
            if key in explicit:
                raise ReadError(
                    f"the key {key!r} appears twice in one mapping; kubectl keeps only the "
                    "last, remove the other",
                    line,
                )
            explicit.add(key)
            value, n2 = self.node(parser, (*path, key), depth + 1)
            out[key] = value
            size += n + n2
        parser.get_event()
        return out, size

    def merge(self, out: dict[str, Any], merged: Any, line: int) -> None:
        """`<<: *base` or `<<: [*a, *b]`, as go-yaml v2 merges (earlier entries win)."""
        sources = list(reversed(merged)) if isinstance(merged, list) else [merged]
        for source in sources:
            if not isinstance(source, dict):
                raise ReadError("a merge key (<<) needs a mapping or a list of mappings", line)
            out.update(source)

    def scalar(self, event: Any, path: Path, line: int) -> Any:
        text: str = event.value
        tag: str | None = event.tag
        plain = event.style in ("", None)
        if tag in (None, "!"):
            if not plain or tag == "!":
                return text
            value = resolve(text)
        else:
            value = _tagged(tag, text, line)
        value = jsonable(value, text, line)
        if not isinstance(value, str) and plain and tag is None and value is not None:
            self.doc.readings[path] = Reading(text, value)
        elif value is None and text not in ("", "~", "null"):
            self.doc.readings[path] = Reading(text, None)
        return value

    @staticmethod
    def check_collection_tag(tag: str | None, standard: str, line: int) -> None:
        if tag not in (None, "!", standard):
            raise ReadError(f"the YAML tag {tag} is not supported; remove it", line)


def _is_merge_key(event: Any) -> bool:
    return (
        isinstance(event, yaml.ScalarEvent)
        and event.value == "<<"
        and (
            (event.tag is None and event.style in ("", None))
            or event.tag == "tag:yaml.org,2002:merge"
        )
    )


def _key_text(value: Any, text: str, line: int) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        hint = f"kubectl reads it as the key {str(value).lower()!r}"
    elif isinstance(value, int):
        hint = f"kubectl reads it as the key {str(value)!r}"
    else:
        hint = "kubectl cannot use it as a key"
    raise ReadError(
        f"the mapping key {text!r} is read as {_kind_of(value)}, not as text ({hint}); "
        f"quote it: {json.dumps(text)}",
        line,
    )


def _allowed_alias_ratio(decoded: int) -> float:
    """go-yaml v2's bound on the share of values that come from aliases."""
    low, high = 400_000, 4_000_000
    if decoded <= low:
        return 0.99
    if decoded >= high:
        return 0.10
    return 0.99 - 0.89 * ((decoded - low) / (high - low))


# --- scalars ---------------------------------------------------------------------------

_MAP: dict[str, Any] = {
    **dict.fromkeys(["y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE"], True),
    **dict.fromkeys(["on", "On", "ON"], True),
    **dict.fromkeys(["n", "N", "no", "No", "NO", "false", "False", "FALSE"], False),
    **dict.fromkeys(["off", "Off", "OFF"], False),
    **dict.fromkeys(["", "~", "null", "Null", "NULL"], None),
    **dict.fromkeys([".nan", ".NaN", ".NAN"], math.nan),
    **dict.fromkeys([".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"], math.inf),
    **dict.fromkeys(["-.inf", "-.Inf", "-.INF"], -math.inf),
}
_YAML_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_DOT_FLOAT = re.compile(r"\.[0-9](_?[0-9])*([eE][-+]?[0-9](_?[0-9])*)?")
_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
    r"([Tt ][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})?)?"
)


def resolve(text: str) -> Any:
    """An unquoted, untagged scalar as go-yaml v2 resolves it (YAML 1.1).

    >>> [resolve(t) for t in ["n", "On", "~", "0x1F", "0777", "1_000", "08", "1e3", "v1"]]
    [False, True, None, 31, 511, 1000, 8.0, 1000.0, 'v1']
    """
    if text in _MAP:
        return _MAP[text]
    hint = text[0]
    if hint == ".":
        if _DOT_FLOAT.fullmatch(text):
            return _go_float(text.replace("_", ""), text)
        return text
    if hint not in "+-0123456789":
        return text
    plain = text.replace("_", "")
    number = _go_int(plain)
    if number is not None:
        if INT64_MIN <= number <= INT64_MAX:
            return number
        if plain[0] not in "+-" and 0 <= number <= UINT64_MAX:
            return number  # uint64
    if _YAML_FLOAT.fullmatch(plain):
        return _go_float(plain, text)
    return text


def _go_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, ...) without the range check."""
    negative = text[0] == "-"
    body = text[1:] if text[0] in "+-" else text
    base = 10
    if len(body) >= 2 and body[0] == "0" and body[1] in "xXoObB":
        base = {"x": 16, "o": 8, "b": 2}[body[1].lower()]
        body = body[2:]
    elif len(body) >= 2 and body[0] == "0":
        base, body = 8, body[1:]
    if not body or any(c not in _DIGITS[base] for c in body):
        return None
    value = int(body, base)
    return -value if negative else value


def _go_float(text: str, original: str) -> Any:
    value = float(text)
    return original if math.isinf(value) else value  # out of range: Go keeps the text


def _tagged(tag: str, text: str, line: int) -> Any:
    short = tag.replace("tag:yaml.org,2002:", "!!")
    if short == "!!str":
        return text
    if short == "!!binary":
        try:
            return base64.b64decode(text.replace("\n", ""), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ReadError("!!binary value is not base64 of UTF-8 text", line) from None
    if short == "!!timestamp":
        if _TIMESTAMP.fullmatch(text):
            return text
        raise ReadError(f"cannot read {_short(text)!r} as a !!timestamp", line)
    wanted: dict[str, tuple[type, ...]] = {
        "!!bool": (bool,),
        "!!int": (int,),
        "!!float": (float, int),
        "!!null": (type(None),),
    }
    if short not in wanted:
        raise ReadError(f"the YAML tag {short} is not supported; remove it", line)
    value = resolve(text) if text else None
    ok = isinstance(value, wanted[short]) and not (
        short in ("!!int", "!!float") and isinstance(value, bool)
    )
    if not ok:
        raise ReadError(f"cannot read {_short(text)!r} as a {short}", line)
    return float(value) if short == "!!float" and value is not None else value


def jsonable(value: Any, text: str, line: int) -> Any:
    """The value kubectl sends: JSON has no NaN or infinity, numbers are int64 or float64."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if INT64_MIN <= value <= INT64_MAX else float(value)
    if math.isnan(value) or math.isinf(value):
        raise ReadError(
            f"{text!r} is not a number JSON can carry (kubectl: json: unsupported value); "
            "remove the field, or quote it if you mean the text",
            line,
        )
    if value.is_integer() and abs(value) < 1e21:
        # Go prints the shortest digits that round-trip, without a fraction or exponent
        # ("4611686018427388000" for 2**62), and kubectl reads that back as an int64.
        number = int(decimal.Decimal(repr(value)))
        if INT64_MIN <= number <= INT64_MAX:
            return number
    return value


# --- JSON files ------------------------------------------------------------------------


class _JSONValueError(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _JSONValueError(
                f"the key {key!r} appears twice in one object; kubectl keeps only the last, "
                "remove the other"
            )
        out[key] = value
    return out


def _json_float(text: str) -> Any:
    value = float(text)
    if math.isinf(value):
        raise _JSONValueError(f"the number {_short(text)} is out of range for a float64")
    return jsonable(value, text, 0)


def _json_int(text: str) -> Any:
    return jsonable(int(text), text, 0)


def _json_constant(name: str) -> Any:
    raise _JSONValueError(f"{name} is not valid JSON (kubectl: invalid character)")


def _json_decoder() -> json.JSONDecoder:
    return json.JSONDecoder(
        object_pairs_hook=_pairs,
        parse_float=_json_float,
        parse_int=_json_int,
        parse_constant=_json_constant,
    )


def _read_json_stream(text: str) -> list[Document]:
    decoder = _json_decoder()
    documents: list[Document] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return documents
        line = text.count("\n", 0, position) + 1
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise ReadError(f"not valid JSON: {exc.msg}", exc.lineno) from None
        except (_JSONValueError, RecursionError) as exc:
            raise ReadError(str(exc) or "nested too deeply", line) from None
        if value is not None:
            documents.append(Document(index=len(documents) + 1, line=line, value=value))


# --- words -----------------------------------------------------------------------------


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "null (no value)"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    return f"the text {value!r}"


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
