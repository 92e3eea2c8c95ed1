"""Output encodings beyond JSON: `xml` (as krakend-xml renders), `yaml` (as Lura's gin render), and `negotiate`
(gin's NegotiateFormat over JSON, plain text, XML and YAML). Only built when an endpoint uses one of them.

XML, by the mxj rules krakend-xml uses: a map of one key renders as that element (`{"user": {...}}` →
`<user>...</user>`), any other map under `<doc>`; keys in sorted order; a key "-name" with a scalar value is an
attribute, "#text" next to attributes is the element's text; a list repeats its element; null, "" and an empty
map or list render as `<key/>`; booleans as true/false. Unlike mxj, names that are not XML names are made XML
names (each bad character → "_") and characters XML cannot carry are replaced, so the output stays XML.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import orjson
import yaml

XML_TYPE = (b"content-type", b"application/xml")  # krakend-xml sets it without a charset
YAML_TYPE = (b"content-type", b"application/x-yaml; charset=utf-8")  # gin 1.9's YAML render
ROOT = "doc"  # mxj's root element for a map of several keys

_NAME = re.compile(r"[^\W\d][\w.\-:]*\Z")
_NAME_BAD = re.compile(r"[^\w.\-:]")
# Characters XML 1.0 cannot hold (C0 controls but tab/LF/CR, surrogates, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SPECIAL = re.compile("[&<>\"'\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"})


@functools.lru_cache(maxsize=4096)  # the same keys come back in every item of a list: checked once
def _name(key: str) -> str:
    if _NAME.match(key):
        return key
    fixed = _NAME_BAD.sub("_", key)
    return fixed if fixed and _NAME.match(fixed) else "_" + fixed


def _scalar(value: Any) -> str:
    """A value's text as mxj prints it (Go's %v), escaped."""
    if type(value) is str:
        text = value
    elif value is True or value is False:
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = repr(value)
    else:  # a container where a text belongs ("#text": {...}): its JSON
        text = orjson.dumps(value).decode()
    if not _SPECIAL.search(text):  # most values: nothing to escape or replace
        return text
    if _NOT_XML.search(text):
        text = _NOT_XML.sub("\ufffd", text)
    return text.translate(_ESCAPES)


def _is_attribute(key: str, value: Any) -> bool:
    """mxj: a "-name" key with a scalar value (a map, list or null under such a key is an element here; mxj
    fails the whole render on it)."""
    return len(key) > 1 and key[0] == "-" and type(value) in (str, int, float, bool)


def _element(out: list[str], key: str, value: Any) -> None:
    if type(value) is list:
        if not value:
            out.append(f"<{_name(key)}/>")
        for item in value:
            _element(out, key, item)
        return
    name = _name(key)
    if type(value) is not dict:
        text = "" if value is None else _scalar(value)
        out.append(f"<{name}>{text}</{name}>" if text else f"<{name}/>")
        return
    attrs = sorted((k[1:], v) for k, v in value.items() if _is_attribute(k, v))
    out.append("<" + name + "".join(f' {_name(k)}="{_scalar(v)}"' for k, v in attrs))
    children = sorted((k, v) for k, v in value.items() if k != "#text" and not _is_attribute(k, v))
    text = value.get("#text")
    if not children and text is None:
        out.append("/>")
        return
    out.append(">")
    if text is not None:
        out.append(_scalar(text))
    for child_key, child in children:
        _element(out, child_key, child)
    out.append(f"</{name}>")


def xml_body(data: dict[str, Any]) -> bytes:
    """The data as krakend-xml writes it (no XML declaration, no indentation)."""
    out: list[str] = []
    if len(data) == 1:
        ((key, value),) = data.items()
        # mxj: a single key holding a list with anything but maps goes under <doc>, so the list has a parent.
        if type(value) is list and any(type(v) is not dict for v in value):
            _element(out, ROOT, data)
        else:
            _element(out, key, value)
    else:
        _element(out, ROOT, data)
    return "".join(out).encode()


# libyaml's emitter when PyYAML has it: ~6x faster than the pure-Python one (45 KB of data: ~50 ms, not ~300 ms).
class _YamlDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Multi-line text as a literal block, as yaml.v3 writes it."""


def _text_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_YamlDumper.add_representer(str, _text_representer)


def yaml_body(data: Any) -> bytes:
    text = yaml.dump(
        data, Dumper=_YamlDumper, indent=4, sort_keys=True, allow_unicode=True, width=1 << 30, default_flow_style=False
    )
    return text.encode()


# gin's offers in Lura's order; the first is the answer when the client sends no Accept.
_OFFERS = (
    ("application/json", "json"),
    ("text/plain", "yaml"),
    ("application/xml", "xml"),
    ("application/x-yaml", "yaml"),
)


def negotiated(accept: str) -> str:
    """The encoding gin's NegotiateFormat picks for this Accept: entries in the client's order, q-values ignored;
    an entry matches an offer it is a prefix of, or up to a "*" on either side. No match, or no Accept: JSON."""
    for part in accept.split(","):
        wanted = part.partition(";")[0].strip() if part.find(";") != 0 else part.strip()
        if not wanted:
            continue
        for offer, encoding in _OFFERS:
            i = 0
            limit = min(len(wanted), len(offer))
            while i < limit:
                if wanted[i] == "*" or offer[i] == "*":
                    return encoding
                if wanted[i] != offer[i]:
                    break
                i += 1
            if i == len(wanted):
                return encoding
    return "json"


def first_header(raw: list[tuple[bytes, bytes]], name: bytes) -> str:
    """The first value of a request header (Go's Header.Get), "" when absent."""
    for key, value in raw:
        if key == name:
            return value.decode("latin-1")
    return ""
