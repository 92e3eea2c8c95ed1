"""A real HTTP upstream serving XML documents and feeds, run as `python -m tests.support.xml_upstream PORT`.

Routes: /ready, /user (KrakenD CE's own XML fixture), /rss, /atom, and hostile documents: /bomb (entity
expansion), /xxe (an external entity naming a local file), /deep (elements nested 10,000 levels), /broken.
"""

from __future__ import annotations

import sys

from aiohttp import web

USER = b"""<?xml version="1.0" encoding="UTF-8"?>
<user type="admin">
  <name>Elliot</name>
  <social>
    <facebook>https://facebook.com</facebook>
    <twitter>https://twitter.com</twitter>
    <youtube>https://youtube.com</youtube>
  </social>
</user>"""

RSS = b"""<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel>
  <title>Example feed</title>
  <link>https://example.com/</link>
  <description>News &amp; notes</description>
  <language>en</language>
  <copyright>2026 Example</copyright>
  <managingEditor>editor@example.com (The Editor)</managingEditor>
  <lastBuildDate>Mon, 02 Jan 2006 15:04:05 GMT</lastBuildDate>
  <category>news</category>
  <image><url>https://example.com/logo.png</url><title>logo</title></image>
  <item>
    <title>First</title>
    <link>https://example.com/1</link>
    <description>one</description>
    <content:encoded><![CDATA[<p>one</p>]]></content:encoded>
    <guid>id-1</guid>
    <pubDate>Mon, 02 Jan 2006 15:04:05 +0100</pubDate>
    <category>a</category><category>b</category>
    <enclosure url="https://example.com/1.mp3" length="123" type="audio/mpeg"/>
  </item>
  <item><title>Second</title><link>https://example.com/2</link></item>
</channel>
</rss>"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="fr">
  <title>Atom feed</title>
  <subtitle>sub</subtitle>
  <updated>2024-05-01T10:00:00Z</updated>
  <author><name>Ann</name><email>ann@example.com</email></author>
  <entry>
    <title>Entry</title>
    <link rel="alternate" href="https://example.com/e"/>
    <id>urn:e</id>
    <updated>2024-05-01T10:00:00+02:00</updated>
    <summary>s</summary>
    <category term="t1"/>
  </entry>
</feed>"""

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<lolz>&lol3;</lolz>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<foo>&xxe;</foo>"""

DEEP = b"<a>" * 10_000 + b"</a>" * 10_000


def fixed(body: bytes, content_type: str = "application/xml; charset=utf-8"):
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type})

    return handler


def make_app() -> web.Application:
    app = web.Application()
    routes = {
        "/ready": fixed(b"ok", "text/plain"),
        "/user": fixed(USER),
        "/rss": fixed(RSS, "application/rss+xml"),
        "/atom": fixed(ATOM, "application/atom+xml"),
        "/bomb": fixed(BOMB),
        "/xxe": fixed(XXE),
        "/deep": fixed(DEEP),
        "/broken": fixed(b"<user><name>x</user>"),
    }
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
