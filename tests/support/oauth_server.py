"""An OAuth2 token server, a JWK set host and a backend, for tests, run as its own process:
`python -m tests.support.oauth_server PORT [CERT KEY]` (with a certificate and its key: HTTPS).

The client is "gw" with the secret SECRET; it may authenticate with HTTP Basic or with form fields.

Routes:
  POST /token/{mode}   a client-credentials token "tok-N" (N counts the tokens issued), by mode:
                         ok          JSON, expires_in from the query (?expires_in=S, default 3600; "none": omitted)
                         slow        as ok, after ?delay=S seconds (default 0.5)
                         form-only   refuses HTTP Basic (401 invalid_client), accepts the form fields
                         urlencoded  the token form-encoded (Content-Type application/x-www-form-urlencoded)
                         hang        never answers (up to 60 s)
                         garbage     200 with a body that is not JSON
                         error       500, with the secret echoed in the body (it must never reach a log)
                         injection   an access_token holding CR LF and a header
  GET  /calls          {"mode": number of token requests}
  GET  /requests       each token request: mode, auth ("basic" or "form"), form fields but the secret, secret_ok
  GET  /api/{name}     a backend: {"name": name, "authorization": the Authorization it received}
  PUT  /jwks/{name}    store a JWK set; GET /jwks/{name} serves it (404 before), counted in /calls as "jwks";
                       GET /jwks/hang never answers (up to 60 s), GET /jwks/garbage is not JSON
  GET  /ready
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import sys
from collections import Counter
from urllib.parse import unquote_plus

from aiohttp import web

CLIENT_ID = "gw"
SECRET = "s3cr3t-Value/With+Signs"
calls: Counter[str] = Counter()
requests: list[dict] = []
issued = [0]
key_sets: dict[str, bytes] = {}


def _basic(header: str) -> tuple[str, str] | None:
    if not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return unquote_plus(user), unquote_plus(password)


def _token_reply(mode: str, query: dict) -> web.Response:
    issued[0] += 1
    token = f"tok-{issued[0]}"
    if mode == "urlencoded":
        return web.Response(
            text=f"access_token={token}&token_type=bearer&expires_in=3600",
            content_type="application/x-www-form-urlencoded",
        )
    if mode == "injection":
        return web.json_response({"access_token": f"{token}\r\nX-Injected: 1", "token_type": "bearer"})
    body: dict = {"access_token": token, "token_type": "bearer"}
    expires_in = query.get("expires_in", "3600")
    if expires_in != "none":
        body["expires_in"] = int(expires_in)
    return web.json_response(body)


async def token(request: web.Request) -> web.Response:
    mode = request.match_info["mode"]
    calls[mode] += 1
    form = dict(await request.post())
    basic = _basic(request.headers.get("Authorization", ""))
    client = basic or (form.get("client_id"), form.get("client_secret"))
    requests.append(
        {
            "mode": mode,
            "auth": "basic" if basic else "form",
            "secret_ok": client[1] == SECRET,
            "form": {k: v for k, v in form.items() if k != "client_secret"},
        }
    )
    if mode == "hang":
        await asyncio.sleep(60)
    if mode == "slow":
        await asyncio.sleep(float(request.query.get("delay", "0.5")))
    if mode == "garbage":
        return web.Response(text="<html>no token here", content_type="application/json")
    if mode == "error":
        return web.json_response({"error": "server_error", "error_description": f"bad {SECRET}"}, status=500)
    if (mode == "form-only" and basic) or client != (CLIENT_ID, SECRET) or form.get("grant_type") is None:
        return web.json_response({"error": "invalid_client"}, status=401)
    return _token_reply(mode, dict(request.query))


async def api(request: web.Request) -> web.Response:
    return web.json_response(
        {"name": request.match_info["name"], "authorization": request.headers.get("Authorization")}
    )


async def put_jwks(request: web.Request) -> web.Response:
    key_sets[request.match_info["name"]] = await request.read()
    return web.json_response({"ok": True})


async def get_jwks(request: web.Request) -> web.Response:
    calls["jwks"] += 1
    name = request.match_info["name"]
    if name == "hang":
        await asyncio.sleep(60)
    if name == "garbage":
        return web.Response(text="<html>not a key set", content_type="application/json")
    data = key_sets.get(name)
    if data is None:
        return web.json_response({"error": "no such set"}, status=404)
    return web.Response(body=data, content_type="application/json")


async def counts(request: web.Request) -> web.Response:
    return web.json_response(dict(calls))


async def seen(request: web.Request) -> web.Response:
    return web.json_response(requests)


async def ready(request: web.Request) -> web.Response:
    return web.json_response({"ready": True})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/token/{mode}", token)
    app.router.add_get("/api/{name}", api)
    app.router.add_put("/jwks/{name}", put_jwks)
    app.router.add_get("/jwks/{name}", get_jwks)
    app.router.add_get("/calls", counts)
    app.router.add_get("/requests", seen)
    app.router.add_get("/ready", ready)
    return app


if __name__ == "__main__":
    tls = None
    if len(sys.argv) == 4:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(sys.argv[2], sys.argv[3])
    # A hanging request must not hold the server up at exit (aiohttp waits for handlers up to shutdown_timeout).
    web.run_app(
        make_app(),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        access_log=None,
        print=None,
        ssl_context=tls,
        handler_cancellation=True,
        shutdown_timeout=1,
    )
