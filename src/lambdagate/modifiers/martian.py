"""`modifier/martian` at run time: a backend's checked modifier tree (modifiers/martian_config.py) compiled once,
when the backend is built, into plain callables that change the HTTP request just before it is sent and the HTTP
response just after it is read, before it is decoded, as KrakenD's martian executor does.

No modifier can fail on a request here (every value that could make martian fail at run time is refused at load
time), so `fifo.Group`'s `aggregateErrors` changes nothing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, unquote_plus

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from lambdagate.config.model import BackendConfig
from lambdagate.modifiers.martian_config import NAMESPACE, REQUEST, RESPONSE, Spec
from lambdagate.security.fields import canonical_header
from lambdagate.security.patterns import pattern_set


@dataclass(slots=True)
class Outgoing:
    """The backend request being modified: its URL (encoded), headers and body (None: none is sent)."""

    url: URL
    headers: CIMultiDict
    body: bytes | None


@dataclass(slots=True)
class Incoming:
    """The backend response being modified, with the request that was sent (stash and filters read it)."""

    status: int
    headers: CIMultiDict
    body: bytes
    request: Outgoing


RequestModifier = Callable[[Outgoing], None]
ResponseModifier = Callable[[Incoming], None]
Pair = tuple[RequestModifier | None, ResponseModifier | None]
DecodeReply = Callable[[int, CIMultiDictProxy, bytes], object]
Exchange = Callable[[URL, CIMultiDict, "bytes | None"], tuple[URL, CIMultiDict, "bytes | None", DecodeReply]]


def compile_spec(spec: Spec) -> Pair:
    """The (request, response) callables of a modifier, each None where its scope leaves it out."""
    request, response = _BUILD[spec.type](spec)
    return (request if REQUEST in spec.scope else None, response if RESPONSE in spec.scope else None)


def martian_exchange(cfg: BackendConfig, decode: DecodeReply) -> Exchange | None:
    """None unless the backend has `modifier/martian`; else a function taking the request about to be sent and
    returning it modified, with the decoder to use on its response (the response modifiers, then `decode`)."""
    spec = cfg.namespaces.get(NAMESPACE)
    if spec is None:
        return None
    on_request, on_response = compile_spec(spec)

    def exchange(url: URL, headers: CIMultiDict, body: bytes | None) -> tuple:
        sent = Outgoing(url, headers, body)
        if on_request is not None:
            on_request(sent)
        if on_response is None:
            return sent.url, sent.headers, sent.body, decode

        def finish(status: int, reply_headers: CIMultiDictProxy, reply: bytes) -> object:
            # A copy: the reply's own headers may be a cached entry's.
            received = Incoming(status, CIMultiDict(reply_headers), reply, sent)
            on_response(received)
            return decode(received.status, received.headers, received.body)

        return sent.url, sent.headers, sent.body, finish

    return exchange


# --- URLs and query strings, as Go's net/url reads and writes them ---------------------------------------------------

_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def query_values(raw: str) -> dict[str, list[str]]:
    """Go's url.ParseQuery: pairs with a `;` or a bad %-escape are dropped; `+` is a space."""
    values: dict[str, list[str]] = {}
    for part in raw.split("&"):
        if not part or ";" in part or _BAD_ESCAPE.search(part):
            continue
        key, _, value = part.partition("=")
        values.setdefault(unquote_plus(key), []).append(unquote_plus(value))
    return values


def encode_query(values: dict[str, list[str]]) -> str:
    """Go's url.Values.Encode: keys sorted, everything but letters, digits and -_.~ escaped, spaces as `+`."""
    return "&".join(f"{quote_plus(k, safe='')}={quote_plus(v, safe='')}" for k in sorted(values) for v in values[k])


def _rebuilt(url: URL, *, scheme: str = "", authority: str | None = None, path: str = "", query: str = "") -> URL:
    return URL.build(
        scheme=scheme or url.scheme,
        authority=url.raw_authority if authority is None else authority,
        path=path or url.raw_path,
        query_string=query or url.raw_query_string,
        encoded=True,
    )


def _host_port(url: URL) -> str:
    """Go's URL.Host: the authority without user information."""
    return url.raw_authority.rpartition("@")[2]


def _with_host_port(url: URL, host_port: str) -> URL:
    userinfo = url.raw_authority.rpartition("@")[0]
    return _rebuilt(url, authority=f"{userinfo}@{host_port}" if userinfo else host_port)


def _host_only(host_port: str) -> str:
    if host_port.startswith("["):
        return host_port[: host_port.index("]") + 1]
    return host_port.partition(":")[0]


def host_pattern(pattern: str) -> re.Pattern[str]:
    """martian's MatchHost: the host (with its port, as in the URL) must equal the pattern, where `*` stands for one
    DNS label."""
    return re.compile("[^.]+".join(re.escape(part) for part in pattern.split("*")))


# --- builders: each returns the (request, response) callables the type has -----------------------------------------


def _request_values(sent: Outgoing, name: str) -> list[str]:
    """A request header's values; Host is the URL's authority unless a modifier set it (Go's req.Host)."""
    values = sent.headers.getall(name, [])
    return values or ([_host_port(sent.url)] if name.lower() == "host" else [])


def _set(spec: Spec) -> Pair:
    name, value = canonical_header(spec.options["name"]), spec.options["value"]
    on_host = name.lower() == "host"

    def request(sent: Outgoing) -> None:
        sent.headers[name] = value

    def response(received: Incoming) -> None:
        if not on_host:  # a response has no Host: martian's setter ignores it
            received.headers[name] = value

    return request, response


def _append(spec: Spec) -> Pair:
    name, value = canonical_header(spec.options["name"]), spec.options["value"]
    on_host = name.lower() == "host"

    def request(sent: Outgoing) -> None:
        sent.headers.add(name, value)

    def response(received: Incoming) -> None:
        if not on_host:
            received.headers.add(name, value)

    return request, response


def _blacklist(spec: Spec) -> Pair:
    names = spec.options["names"]

    def request(sent: Outgoing) -> None:
        for name in names:
            sent.headers.popall(name, None)

    def response(received: Incoming) -> None:
        for name in names:
            received.headers.popall(name, None)

    return request, response


def _copy(spec: Spec) -> Pair:
    source, target = spec.options["from"], canonical_header(spec.options["to"])

    def request(sent: Outgoing) -> None:
        # As martian: a missing source header sets an empty one.
        sent.headers[target] = next(iter(_request_values(sent, source)), "")

    def response(received: Incoming) -> None:
        received.headers[target] = received.headers.get(source, "")

    return request, response


def _id(spec: Spec) -> Pair:
    name = canonical_header(spec.options["header"])

    def request(sent: Outgoing) -> None:
        if not sent.headers.get(name):  # an id the request already has is kept
            sent.headers[name] = str(uuid.uuid4())

    return request, None


def _query_set(spec: Spec) -> Pair:
    name, value = spec.options["name"], spec.options["value"]

    def request(sent: Outgoing) -> None:
        values = query_values(sent.url.raw_query_string)
        values[name] = [value]
        sent.url = _rebuilt(sent.url, query=encode_query(values))

    return request, None


def _url_set(spec: Spec) -> Pair:
    scheme, host, path, query = (spec.options[k] for k in ("scheme", "host", "path", "query"))
    # Go keeps the decoded path and escapes it when sending: all but letters, digits, -._~ and $&+,/:;=@.
    encoded_path = quote(path, safe="$&+,/:;=@")

    def request(sent: Outgoing) -> None:
        url = _with_host_port(sent.url, host) if host else sent.url
        sent.url = _rebuilt(url, scheme=scheme, path=encoded_path, query=query)

    return request, None


def _port(spec: Spec) -> Pair:
    port, default_for_scheme, remove = (spec.options[k] for k in ("port", "defaultForScheme", "remove"))
    defaults = {"http": 80, "https": 443}

    def request(sent: Outgoing) -> None:
        host = _host_only(_host_port(sent.url))
        if remove:
            sent.url = _with_host_port(sent.url, host)
            return
        number = defaults.get(sent.url.scheme) if default_for_scheme else port
        if number is not None:
            sent.url = _with_host_port(sent.url, f"{host}:{number}")

    return request, None


def _body(spec: Spec) -> Pair:
    content_type, body = spec.options["contentType"], spec.options["body"]

    def request(sent: Outgoing) -> None:
        sent.headers["Content-Type"] = content_type
        sent.headers.popall("Content-Encoding", None)
        sent.body = body  # sent whatever the method, as Go's client does

    def response(received: Incoming) -> None:
        received.headers["Content-Type"] = content_type
        received.headers.popall("Content-Encoding", None)
        received.body = body

    return request, response


def _cookie(spec: Spec) -> Pair:
    pair, set_cookie = spec.options["pair"], spec.options["set_cookie"]

    def request(sent: Outgoing) -> None:
        cookies = sent.headers.get("Cookie")
        sent.headers["Cookie"] = f"{cookies}; {pair}" if cookies else pair

    def response(received: Incoming) -> None:
        received.headers.add("Set-Cookie", set_cookie)

    return request, response


def _stash(spec: Spec) -> Pair:
    name = canonical_header(spec.options["headerName"])

    def request(sent: Outgoing) -> None:
        # Without user information: a response-scope stash would hand the backend's credentials to the client.
        sent.headers[name] = str(sent.url.with_user(None))

    def response(received: Incoming) -> None:
        received.headers[name] = received.request.headers.get(name, "")

    return request, response


def _status(spec: Spec) -> Pair:
    code = spec.options["statusCode"]

    def response(received: Incoming) -> None:
        received.status = code

    return None, response


def _group(spec: Spec) -> Pair:
    """fifo.Group and priority.Group: the members in order (priority.Group's are sorted at load time)."""
    pairs = [compile_spec(child) for child in spec.children]
    requests = tuple(req for req, _ in pairs if req is not None)
    responses = tuple(res for _, res in pairs if res is not None)

    def request(sent: Outgoing) -> None:
        for modify in requests:
            modify(sent)

    def response(received: Incoming) -> None:
        for modify in responses:
            modify(received)

    return request, response


Match = Callable[[Outgoing], bool]


def _conditional(spec: Spec, matches: Match, on_response: Callable[[Incoming], bool]) -> Pair:
    """A filter: its `modifier` where the condition holds, its `else` (if any) where it does not."""
    then = compile_spec(spec.children[0])
    otherwise = compile_spec(spec.otherwise) if spec.otherwise is not None else (None, None)

    def request(sent: Outgoing) -> None:
        modify = then[0] if matches(sent) else otherwise[0]
        if modify is not None:
            modify(sent)

    def response(received: Incoming) -> None:
        modify = then[1] if on_response(received) else otherwise[1]
        if modify is not None:
            modify(received)

    return request, response


def _header_filter(spec: Spec) -> Pair:
    name, value = canonical_header(spec.options["name"]), spec.options["value"]
    return _conditional(
        spec,
        lambda sent: value in _request_values(sent, name),
        lambda received: value in received.headers.getall(name, []),
    )


def _regex_filter(spec: Spec) -> Pair:
    name, regex = spec.options["header"], pattern_set([spec.options["regex"]])

    def matches(sent: Outgoing) -> bool:
        value = sent.headers.get(name, "")  # the request's header, on the response side too (as martian)
        return bool(value) and regex.Match(value.encode()) is not None

    return _conditional(spec, matches, lambda received: matches(received.request))


def _query_filter(spec: Spec) -> Pair:
    name, value = spec.options["name"], spec.options["value"]

    def matches(sent: Outgoing) -> bool:
        values = query_values(sent.url.raw_query_string).get(name)
        return values is not None and (not value or value in values)

    return _conditional(spec, matches, lambda received: matches(received.request))


def _url_filter(spec: Spec) -> Pair:
    scheme, host, path, query = (spec.options[k] for k in ("scheme", "host", "path", "query"))
    host_match = host_pattern(host).fullmatch if host else None

    def matches(sent: Outgoing) -> bool:
        url = sent.url
        return (
            (not scheme or scheme == url.scheme)
            and (host_match is None or host_match(_host_port(url)) is not None)
            and (not path or path == url.path)
            and (not query or query == url.raw_query_string)
        )

    return _conditional(spec, matches, lambda received: matches(received.request))


_BUILD: dict[str, Callable[[Spec], Pair]] = {
    "header.Modifier": _set,
    "header.Append": _append,
    "header.Blacklist": _blacklist,
    "header.Copy": _copy,
    "header.Id": _id,
    "header.Filter": _header_filter,
    "header.RegexFilter": _regex_filter,
    "querystring.Modifier": _query_set,
    "querystring.Filter": _query_filter,
    "url.Modifier": _url_set,
    "url.Filter": _url_filter,
    "body.Modifier": _body,
    "cookie.Modifier": _cookie,
    "stash.Modifier": _stash,
    "port.Modifier": _port,
    "status.Modifier": _status,
    "fifo.Group": _group,
    "priority.Group": _group,
}
