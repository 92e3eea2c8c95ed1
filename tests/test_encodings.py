"""Backend encodings (xml, rss, unknown names) and output encodings (xml, yaml, negotiate), as KrakenD CE.

Expected bodies marked "KrakenD CE" are copied from krakend-ce's integration fixtures (tests/fixtures/specs:
xml_1, xml_2, negotitate_plain) and krakend-xml's render test: the same input must give the same bytes.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import orjson
import pytest
import yaml

from lambdagate.backends.decoders import XML_MAX_DEPTH, XmlRefused, decode_rss, parse_xml, xml_decoder
from lambdagate.config import LoadOptions, validate_document
from lambdagate.pipeline.encodings import negotiated, xml_body, yaml_body
from tests.support import xml_upstream
from tests.support.asgi import FakeBackends, run
from tests.support.procs import serve_module

# --- decoding XML (krakend-xml / mxj rules) ---------------------------------------------------------------

KRAKEND_USER = {
    "user": {
        "-type": "admin",
        "name": "Elliot",
        "social": {
            "facebook": "https://facebook.com",
            "twitter": "https://twitter.com",
            "youtube": "https://youtube.com",
        },
    }
}


def test_xml_root_attributes_and_text() -> None:
    assert parse_xml(xml_upstream.USER) == KRAKEND_USER


def test_xml_repeated_elements_become_lists_and_values_stay_strings() -> None:
    doc = b'<P id="1"><E w="h"><A>x</A></E><E w="w"><A>y</A></E><G><V>1</V><V>true</V></G><Z/></P>'
    assert parse_xml(doc) == {
        "P": {
            "-id": "1",
            "E": [{"-w": "h", "A": "x"}, {"-w": "w", "A": "y"}],
            "G": {"V": ["1", "true"]},
            "Z": "",
        }
    }


def test_xml_text_next_to_attributes_or_children_is_hash_text() -> None:
    assert parse_xml(b'<a x="1"> t </a>') == {"a": {"-x": "1", "#text": "t"}}
    assert parse_xml(b"<a><b/>t</a>") == {"a": {"b": "", "#text": "t"}}
    # mxj: text first makes the element that text; later children are dropped
    assert parse_xml(b"<a>t<b/></a>") == {"a": "t"}


def test_xml_namespace_prefixes_are_dropped() -> None:
    doc = b'<r xmlns:atom="http://www.w3.org/2005/Atom"><atom:link href="h"/><x:y:z>v</x:y:z></r>'
    assert parse_xml(doc) == {"r": {"-atom": "http://www.w3.org/2005/Atom", "link": {"-href": "h"}, "x:y:z": "v"}}


def test_xml_collection_is_the_map_under_collection() -> None:
    assert xml_decoder(True)(b"<L><i>1</i><i>2</i></L>") == {"collection": {"L": {"i": ["1", "2"]}}}


def test_xml_non_utf8_declared_encoding() -> None:
    doc = '<?xml version="1.0" encoding="iso-8859-1"?><p>caf\xe9</p>'.encode("latin-1")
    assert parse_xml(doc) == {"p": "caf\xe9"}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(xml_upstream.BOMB, id="entity-expansion"),
        pytest.param(xml_upstream.XXE, id="external-entity"),
        pytest.param(b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]><x/>', id="parameter-entity"),
        pytest.param(xml_upstream.DEEP, id="deep"),
        pytest.param(b"<a>" * (XML_MAX_DEPTH + 1) + b"</a>" * (XML_MAX_DEPTH + 1), id="one-too-deep"),
        pytest.param(b"<user><name>x</user>", id="malformed"),
        pytest.param(b"", id="empty"),
        pytest.param(b"<x>&nbsp;</x>", id="undefined-entity"),
    ],
)
def test_hostile_or_broken_xml_is_refused(body: bytes) -> None:
    with pytest.raises(XmlRefused):
        parse_xml(body)


def test_xml_at_the_depth_limit_is_read() -> None:
    doc = b"<a>" * XML_MAX_DEPTH + b"v" + b"</a>" * XML_MAX_DEPTH
    value = parse_xml(doc)
    for _ in range(XML_MAX_DEPTH - 1):
        value = value["a"]
    assert value == {"a": "v"}


# --- decoding feeds (krakend-rss) -------------------------------------------------------------------------


def test_rss_feed_fields() -> None:
    feed = decode_rss(xml_upstream.RSS)
    assert {k: v for k, v in feed.items() if k != "items"} == {
        "author": {"name": "The Editor", "email": "editor@example.com"},
        "categories": ["news"],
        "custom": None,
        "copyright": "2026 Example",
        "description": "News & notes",
        "type": "rss",
        "language": "en",
        "title": "Example feed",
        "published": "",
        "updated": "Mon, 02 Jan 2006 15:04:05 GMT",
        "img_url": "https://example.com/logo.png",
    }
    first, second = feed["items"]
    assert first == {
        "title": "First",
        "description": "one",
        "content": "<p>one</p>",
        "link": "https://example.com/1",
        "links": ["https://example.com/1"],
        "published": "Mon, 02 Jan 2006 15:04:05 +0100",
        "publishedParsed": "2006-01-02T15:04:05+01:00",
        "guid": "id-1",
        "categories": ["a", "b"],
        "enclosures": [{"url": "https://example.com/1.mp3", "length": "123", "type": "audio/mpeg"}],
    }
    assert second == {"title": "Second", "link": "https://example.com/2", "links": ["https://example.com/2"]}


def test_atom_feed_fields() -> None:
    feed = decode_rss(xml_upstream.ATOM)
    assert (feed["type"], feed["title"], feed["description"], feed["language"]) == ("atom", "Atom feed", "sub", "fr")
    assert feed["author"] == {"name": "Ann", "email": "ann@example.com"} and "img_url" not in feed
    assert feed["items"] == [
        {
            "title": "Entry",
            "description": "s",
            "link": "https://example.com/e",
            "links": ["https://example.com/e"],
            "updated": "2024-05-01T10:00:00+02:00",
            "updatedParsed": "2024-05-01T10:00:00+02:00",
            "guid": "urn:e",
            "categories": ["t1"],
        }
    ]


def test_a_document_that_is_no_feed_is_refused() -> None:
    with pytest.raises(XmlRefused, match="not an RSS or Atom feed"):
        decode_rss(xml_upstream.USER)


# --- rendering --------------------------------------------------------------------------------------------


def test_xml_render_matches_krakend() -> None:
    assert xml_body(KRAKEND_USER) == (  # KrakenD CE xml_1
        b'<user type="admin"><name>Elliot</name><social><facebook>https://facebook.com</facebook>'
        b"<twitter>https://twitter.com</twitter><youtube>https://youtube.com</youtube></social></user>"
    )
    data = {"a": {"content": "supu & tupu"}, "content": "tupu", "foo": 42}  # krakend-xml's render test
    assert xml_body(data) == b"<doc><a><content>supu &amp; tupu</content></a><content>tupu</content><foo>42</foo></doc>"
    data = {"foo": 42, "headers": {"Accept-Encoding": ["gzip"]}, "path": "/p", "query": {}}  # KrakenD CE xml_2
    assert xml_body(data) == (
        b"<doc><foo>42</foo><headers><Accept-Encoding>gzip</Accept-Encoding></headers><path>/p</path><query/></doc>"
    )


@pytest.mark.parametrize(
    ("data", "xml"),
    [
        ({}, b"<doc/>"),
        ({"c": [{"a": 1}, {"a": 2}]}, b"<c><a>1</a></c><c><a>2</a></c>"),  # mxj: a list of maps repeats the root
        ({"c": [1, "x"]}, b"<doc><c>1</c><c>x</c></doc>"),
        ({"c": []}, b"<c/>"),
        (
            {"t": True, "f": False, "n": None, "e": "", "x": 1.5},
            b"<doc><e/><f>false</f><n/><t>true</t><x>1.5</x></doc>",
        ),
        ({"a": {"-z": "2", "-b": 1, "#text": "t"}}, b'<a b="1" z="2">t</a>'),
        ({"a": {"-k": "<\"'&>"}}, b'<a k="&lt;&quot;&apos;&amp;&gt;"/>'),
        ({"a": {"-m": {"x": 1}}}, b"<a><_-m><x>1</x></_-m></a>"),  # not a scalar: an element (mxj fails the render)
        ({'bad key"/><x': "v", "1st": "\x01"}, b"<doc><_1st>\xef\xbf\xbd</_1st><bad_key____x>v</bad_key____x></doc>"),
    ],
)
def test_xml_render_rules(data: dict, xml: bytes) -> None:
    assert xml_body(data) == xml


def test_yaml_render_matches_krakend() -> None:
    assert yaml_body(KRAKEND_USER) == (  # KrakenD CE negotitate_plain
        b"user:\n    -type: admin\n    name: Elliot\n    social:\n        facebook: https://facebook.com\n"
        b"        twitter: https://twitter.com\n        youtube: https://youtube.com\n"
    )
    assert yaml.safe_load(yaml_body({"b": [1, {"c": None}], "a": "x\ny"})) == {"b": [1, {"c": None}], "a": "x\ny"}
    assert yaml_body({"a": "x\ny"}) == b"a: |-\n    x\n    y\n"


@pytest.mark.parametrize(
    ("accept", "encoding"),
    [
        ("", "json"),
        ("application/json; charset=utf-8", "json"),
        ("application/xml", "xml"),
        ("text/plain", "yaml"),
        ("application/x-yaml", "yaml"),
        ("text/*", "yaml"),
        ("*/*", "json"),
        ("text/xml", "json"),  # gin does not offer text/xml: no match, JSON
        ("text/html, application/xml;q=0.1, application/json", "xml"),  # q-values ignored, client order
        ("application/", "json"),  # a prefix matches the first offer it prefixes
        ("garbage", "json"),
    ],
)
def test_negotiate_follows_gin(accept: str, encoding: str) -> None:
    assert negotiated(accept) == encoding


# --- config -----------------------------------------------------------------------------------------------


def _doc(output: str | None = None, *encodings: str, service_output: str | None = None) -> dict:
    endpoint: dict = {
        "endpoint": "/a",
        "backend": [{"host": ["http://h"], "url_pattern": "/", "encoding": e} for e in encodings],
    }
    if output is not None:
        endpoint["output_encoding"] = output
    doc: dict = {"version": 3, "endpoints": [endpoint]}
    if service_output is not None:
        doc["output_encoding"] = service_output
    return doc


@pytest.mark.parametrize("name", ["no_op", "form", "fast-json", "negotiate", "yaml"])
def test_unknown_backend_encoding_is_json_with_a_warning(name: str) -> None:
    loaded = validate_document(_doc(None, name), LoadOptions())
    assert loaded.service.endpoints[0].backend[0].encoding == "json"
    assert [(w.path, w.message) for w in loaded.warnings] == [
        ("endpoints[0].backend[0].encoding", f"unknown encoding {name!r}: decoded as JSON")
    ]


def test_backend_encoding_names_are_read_lower_cased() -> None:
    loaded = validate_document(_doc(None, "XML"), LoadOptions())
    assert loaded.service.endpoints[0].backend[0].encoding == "xml" and not loaded.warnings


@pytest.mark.parametrize(
    ("output", "backends", "read_as"),
    [
        ("html", ("string",), "string"),
        ("html", ("xml",), "xml"),
        ("html", ("rss",), "json"),
        ("XML", ("json", "json"), "json"),
    ],
)
def test_unknown_output_encoding_falls_back_as_krakend(output: str, backends: tuple, read_as: str) -> None:
    loaded = validate_document(_doc(output, *backends), LoadOptions())
    assert loaded.service.endpoints[0].output_encoding == read_as
    assert (loaded.warnings[0].path, loaded.warnings[0].message) == (
        "endpoints[0].output_encoding",
        f"unknown encoding {output!r}: rendered as {read_as!r}",
    )


def test_service_output_encoding_applies_and_unknown_is_warned() -> None:
    loaded = validate_document(_doc(None, "json", service_output="yaml"), LoadOptions())
    assert loaded.service.endpoints[0].output_encoding == "yaml" and not loaded.warnings
    loaded = validate_document(_doc(None, "json", service_output="toml"), LoadOptions())
    assert loaded.service.endpoints[0].output_encoding == "json"
    assert [w.path for w in loaded.warnings] == ["output_encoding"]


# --- in process -------------------------------------------------------------------------------------------

USER_DATA = KRAKEND_USER


def _service(*endpoints: dict, **kw) -> dict:
    return {"version": 3, "endpoints": list(endpoints), **kw}


def _ep(path: str, *urls: str, **kw) -> dict:
    return {"endpoint": path, "backend": [{"host": ["http://unused"], "url_pattern": u} for u in urls], **kw}


def _fakes() -> FakeBackends:
    from lambdagate.errors import BackendError
    from tests.support.asgi import returning

    return FakeBackends({"/user": returning(USER_DATA), "/fail": returning(error=BackendError("down"))})


def test_output_encodings_in_process() -> None:
    config = _service(
        _ep("/xml", "/user", output_encoding="xml", cache_ttl="1h"),
        _ep("/yaml", "/user", output_encoding="yaml"),
        _ep("/neg", "/user", output_encoding="negotiate"),
        _ep("/partial", "/user", "/fail", output_encoding="xml"),
        _ep("/svc", "/user"),
        output_encoding="yaml",
    )

    async def scenario(gw) -> None:
        r = await gw.request("GET", "/xml")
        assert (r.status, r.header("content-type"), r.header("x-krakend-completed")) == (200, "application/xml", "true")
        assert r.header("cache-control") == "public, max-age=3600" and r.body == xml_body(USER_DATA)
        r = await gw.request("GET", "/yaml")
        assert (r.header("content-type"), r.body) == ("application/x-yaml; charset=utf-8", yaml_body(USER_DATA))
        r = await gw.request("GET", "/svc")  # the service's output_encoding
        assert r.header("content-type") == "application/x-yaml; charset=utf-8"
        for accept, content_type, body in [
            ("application/xml", "application/xml", xml_body(USER_DATA)),
            ("text/plain", "application/x-yaml; charset=utf-8", yaml_body(USER_DATA)),
            ("application/json", "application/json; charset=utf-8", orjson.dumps(USER_DATA)),
            (None, "application/json; charset=utf-8", orjson.dumps(USER_DATA)),
        ]:
            r = await gw.request("GET", "/neg", headers=[("Accept", accept)] if accept else [])
            assert (r.status, r.header("content-type"), r.body) == (200, content_type, body), accept
        r = await gw.request("GET", "/partial")  # one backend failed: the rest, in XML, marked incomplete
        assert (r.status, r.header("x-krakend-completed"), r.body) == (200, "false", xml_body(USER_DATA))

    run(config, _fakes(), scenario)


def test_all_backends_failed_keeps_the_error_reply() -> None:
    async def scenario(gw) -> None:
        r = await gw.request("GET", "/x", headers=[("Accept", "application/xml")])
        assert r.status >= 500 and r.header("x-krakend-completed") == "false" and r.json()["error"]

    run(_service(_ep("/x", "/fail", output_encoding="negotiate")), _fakes(), scenario)


# --- real processes ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xml_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_module("tests.support.xml_upstream", "/ready", tmp_path_factory.mktemp("xml_upstream")) as url:
        yield url


def _get(url: str, accept: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_xml_and_rss_backends_against_a_real_upstream(start_gateway, xml_up: str) -> None:
    def b(path: str, encoding: str, **kw) -> dict:
        return {"host": [xml_up], "url_pattern": path, "encoding": encoding, **kw}

    config = _service(
        _ep("/xml/xml", output_encoding="xml") | {"backend": [b("/user", "xml")]},
        _ep("/negotiate", output_encoding="negotiate") | {"backend": [b("/user", "xml")]},
        _ep("/feeds") | {"backend": [b("/rss", "rss", group="rss", allow=["title"]), b("/atom", "rss", group="atom")]},
        *[_ep(f"/hostile{p}") | {"backend": [b(p, "xml")]} for p in ("/bomb", "/xxe", "/deep", "/broken")],
        _ep("/partial") | {"backend": [b("/user", "xml"), b("/bomb", "xml", group="bad")]},
        _ep("/not-a-feed") | {"backend": [b("/user", "rss")]},
    )
    gw = start_gateway(config)
    status, headers, body = _get(gw.url + "/xml/xml")
    assert (status, headers["content-type"], body) == (200, "application/xml", xml_body(KRAKEND_USER))
    status, headers, body = _get(gw.url + "/negotiate", "application/json; charset=utf-8")  # KrakenD CE negotiate
    assert (status, orjson.loads(body)) == (200, KRAKEND_USER)
    status, headers, body = _get(gw.url + "/negotiate", "text/plain")
    assert (status, headers["content-type"], body) == (
        200,
        "application/x-yaml; charset=utf-8",
        yaml_body(KRAKEND_USER),
    )
    status, _, body = _get(gw.url + "/feeds")
    feeds = orjson.loads(body)
    assert (status, feeds["rss"], feeds["atom"]["type"]) == (200, {"title": "Example feed"}, "atom")
    assert feeds["atom"]["items"][0]["guid"] == "urn:e"
    for path in ("/bomb", "/xxe", "/deep", "/broken"):
        status, headers, body = _get(gw.url + "/hostile" + path)
        assert status == 500 and headers["x-krakend-completed"] == "false", path
        assert b"root:" not in body and b"lol" not in body, path
    status, headers, body = _get(gw.url + "/partial")
    assert (status, headers["x-krakend-completed"], orjson.loads(body)) == (200, "false", KRAKEND_USER)
    assert _get(gw.url + "/not-a-feed")[0] == 500
    assert "Traceback" not in gw.log()
