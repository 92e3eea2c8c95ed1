"""Backend reply decoders for the XML-based encodings (`xml`, `rss`), as KrakenD's krakend-xml and krakend-rss.

`xml` follows the rules of the mxj library krakend-xml uses: the root element is the one key of the result; an
element with only text is that text (a string); attributes are keys with a "-" prefix, and an element's text
next to attributes or children is its "#text"; a repeated element becomes a list; an empty element is "".
Names lose their namespace prefix ("atom:link" → "link"). Values stay strings (mxj does not cast them).

Parsing is the standard library's expat with every entity declaration refused (the defusedxml rule): no
external entities, no entity expansion (billion laughs), nothing fetched. Elements nest at most XML_MAX_DEPTH
levels, and the body is already bounded by the backend-response size cap.

`rss` reads RSS (0.9x, 1.0, 2.0) and Atom feeds into the fields krakend-rss gives (gofeed's universal feed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from xml.parsers import expat

# Each element adds up to two levels to the data (a list of repeated elements, then the element's map): 64
# elements deep stays within the JSON depth the gateway renders (reply_data.MAX_JSON_DEPTH = 128).
XML_MAX_DEPTH = 64
_TRIMMED = "\t\r\b\n "  # mxj trims these around each text run (Go's "\b", not form feed)


class XmlRefused(ValueError):
    """The reply is not XML the gateway accepts: malformed, a DTD entity declaration, or nested too deep."""


def _local(name: str) -> str:
    """ "atom:link" → "link", as Go's XML decoder gives mxj the local part of a prefixed name."""
    prefix, sep, local = name.partition(":")
    return local if sep and prefix and local and ":" not in local else name


def _refuse_entities(*_args: Any) -> None:
    raise XmlRefused("entity declarations are not allowed")


class _TreeBuilder:
    """expat callbacks building mxj's map. Each open element is [name, attrs+children, simple text or None]."""

    __slots__ = ("stack", "root", "text")

    def __init__(self) -> None:
        self.stack: list[list[Any]] = []
        self.root: dict[str, Any] = {}
        self.text: list[str] = []

    def start(self, name: str, attrs: dict[str, str]) -> None:
        self.flush()
        if len(self.stack) >= XML_MAX_DEPTH:
            raise XmlRefused(f"XML nested deeper than {XML_MAX_DEPTH} elements")
        self.stack.append([_local(name), {"-" + _local(k): v for k, v in attrs.items()} if attrs else {}, None])

    def end(self, _name: str) -> None:
        self.flush()
        key, children, simple = self.stack.pop()
        # mxj: once an element without attributes or children got text, it is that text (later children dropped).
        value = simple if simple is not None else (children or "")
        parent = self.stack[-1][1] if self.stack else self.root
        if key not in parent:
            parent[key] = value
        elif type(parent[key]) is list:
            parent[key].append(value)
        else:
            parent[key] = [parent[key], value]

    def chars(self, data: str) -> None:
        self.text.append(data)

    def flush(self, *_args: Any) -> None:
        """One text run ends (at any markup but an entity reference): it is kept as mxj keeps a CharData token."""
        if not self.text:
            return
        run = "".join(self.text).strip(_TRIMMED)
        self.text.clear()
        if not run or not self.stack:
            return
        top = self.stack[-1]
        if top[1]:
            top[1]["#text"] = run
        else:
            top[2] = run


def parse_xml(body: bytes) -> dict[str, Any]:
    """The document as mxj's map: {root name: root value}. XmlRefused when it cannot be read safely."""
    builder = _TreeBuilder()
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.EntityDeclHandler = _refuse_entities
    parser.UnparsedEntityDeclHandler = _refuse_entities
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.chars
    parser.CommentHandler = builder.flush
    parser.ProcessingInstructionHandler = builder.flush
    parser.buffer_text = True
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise XmlRefused(f"invalid XML: {exc}") from None
    except RecursionError:  # expat's own stack is iterative; kept in case a handler ever recurses
        raise XmlRefused("XML nested too deep") from None
    return builder.root


def xml_decoder(is_collection: bool) -> Callable[[bytes], dict[str, Any]]:
    """krakend-xml: the document's map, or with `is_collection` that map under "collection" (not a list)."""
    if is_collection:
        return lambda body: {"collection": parse_xml(body)}
    return parse_xml


# --- RSS / Atom ---------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """An element's text: the string, an element-with-attributes' "#text", a repeated element's first."""
    if type(value) is list:
        return _text(value[0]) if value else ""
    if type(value) is dict:
        text = value.get("#text", "")
        return text if isinstance(text, str) else ""
    return value if isinstance(value, str) else ""


def _all(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if type(value) is list else [value]


def _first(node: dict[str, Any], *names: str) -> str:
    for name in names:
        text = _text(node.get(name))
        if text:
            return text
    return ""


def _go_time(moment: datetime) -> str:
    """A time as Go's encoding/json writes it (RFC 3339, "Z" for UTC)."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _parsed_date(text: str) -> str | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _go_time(moment)


def _person(text: str) -> dict[str, str] | None:
    """RSS "email (Name)" or "Name <email>" or a bare value → gofeed's Person."""
    text = text.strip()
    if not text:
        return None
    if text.endswith(")") and "(" in text:
        email, _, name = text[:-1].partition("(")
        return _compact({"name": name.strip(), "email": email.strip()})
    if text.endswith(">") and "<" in text:
        name, _, email = text[:-1].partition("<")
        return _compact({"name": name.strip(), "email": email.strip()})
    return {"email": text} if "@" in text else {"name": text}


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    """Go's `omitempty`: empty strings, lists and nulls left out."""
    return {k: v for k, v in values.items() if v not in ("", None, [], {})}


def _rss_item(item: dict[str, Any]) -> dict[str, Any]:
    link = _first(item, "link")
    published = _first(item, "pubDate", "date")
    author = _person(_first(item, "author", "creator"))
    return _compact(
        {
            "title": _first(item, "title"),
            "description": _first(item, "description"),
            "content": _first(item, "encoded"),
            "link": link,
            "links": [link] if link else [],
            "published": published,
            "publishedParsed": _parsed_date(published),
            "author": author,
            "authors": [author] if author else [],
            "guid": _first(item, "guid"),
            "categories": [t for c in _all(item.get("category")) if (t := _text(c))],
            "enclosures": [
                _compact({"url": e.get("-url", ""), "length": e.get("-length", ""), "type": e.get("-type", "")})
                for e in _all(item.get("enclosure"))
                if type(e) is dict
            ][:1],
        }
    )


def _atom_link(links: list[Any]) -> str:
    for link in links:
        if type(link) is dict and link.get("-rel", "alternate") == "alternate":
            return link.get("-href", "")
    return ""


def _atom_person(node: dict[str, Any]) -> dict[str, str] | None:
    first = _all(node.get("author"))
    person = first[0] if first else None
    return (_compact({"name": _first(person, "name"), "email": _first(person, "email")}) or None) if person else None


def _atom_entry(entry: dict[str, Any]) -> dict[str, Any]:
    links = _all(entry.get("link"))
    author = _atom_person(entry) if type(entry) is dict else None
    updated, published = _first(entry, "updated", "modified"), _first(entry, "published", "issued")
    return _compact(
        {
            "title": _first(entry, "title"),
            "description": _first(entry, "summary"),
            "content": _first(entry, "content"),
            "link": _atom_link(links),
            "links": [
                link.get("-href", "")
                for link in links
                if type(link) is dict and link.get("-rel", "alternate") in ("alternate", "self")
            ],
            "updated": updated,
            "updatedParsed": _parsed_date(updated),
            "published": published,
            "publishedParsed": _parsed_date(published),
            "author": author,
            "authors": [author] if author else [],
            "guid": _first(entry, "id"),
            "categories": [c.get("-term", "") for c in _all(entry.get("category")) if type(c) is dict],
        }
    )


def _nodes(value: Any) -> list[dict[str, Any]]:
    return [n if type(n) is dict else {} for n in _all(value)]


def _feed(kind: str, node: dict[str, Any], items: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """krakend-rss's keys: Go's zero values (null, "") for what the feed lacks; `img_url` only with an image."""
    feed = {
        "items": items,
        "author": fields.get("author"),
        "categories": fields.get("categories") or None,
        "custom": None,
        "copyright": fields.get("copyright", ""),
        "description": fields.get("description", ""),
        "type": kind,
        "language": fields.get("language", ""),
        "title": _first(node, "title"),
        "published": fields.get("published", ""),
        "updated": fields.get("updated", ""),
    }
    if fields.get("img_url") is not None:
        feed["img_url"] = fields["img_url"]
    return feed


def decode_rss(body: bytes) -> dict[str, Any]:
    """An RSS or Atom feed as krakend-rss decodes it. XmlRefused when the document is neither."""
    doc = parse_xml(body)
    root, node = next(iter(doc.items()))
    node = node if type(node) is dict else {}
    if root == "feed":
        author = _atom_person(node)
        logo = node.get("logo")
        return _feed(
            "atom",
            node,
            [_atom_entry(e) for e in _nodes(node.get("entry"))],
            author=author,
            categories=[c.get("-term", "") for c in _all(node.get("category")) if type(c) is dict],
            copyright=_first(node, "rights", "copyright"),
            description=_first(node, "subtitle", "tagline"),
            language=node.get("-lang", ""),
            updated=_first(node, "updated", "modified"),
            img_url=_text(logo) if logo is not None else None,
        )
    if root not in ("rss", "RDF"):
        raise XmlRefused(f"not an RSS or Atom feed (root element {root!r})")
    channel = _nodes(node.get("channel"))[:1] or [{}]
    chan = channel[0]
    items = node.get("item") if root == "RDF" else chan.get("item")
    image = _nodes(chan.get("image") or node.get("image"))
    return _feed(
        "rss",
        chan,
        [_rss_item(i) for i in _nodes(items)],
        author=_person(_first(chan, "managingEditor", "webMaster", "creator")),
        categories=[t for c in _all(chan.get("category")) if (t := _text(c))],
        copyright=_first(chan, "copyright", "rights"),
        description=_first(chan, "description"),
        language=_first(chan, "language"),
        published=_first(chan, "pubDate"),
        updated=_first(chan, "lastBuildDate", "date"),
        img_url=_first(image[0], "url") if image else None,
    )


def rss_decoder(_is_collection: bool) -> Callable[[bytes], dict[str, Any]]:
    return decode_rss


# The backend encodings decoded here (http.reply_decoder keeps json, safejson, string and no-op inline).
DECODERS: dict[str, Callable[[bool], Callable[[bytes], dict[str, Any]]]] = {"xml": xml_decoder, "rss": rss_decoder}
