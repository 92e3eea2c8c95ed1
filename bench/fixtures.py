"""Config files for one bench run, written into its own temporary folder (nothing system-wide is touched).

- the upstream: nginx serving fixed JSON at /, /a, /b, /c and Lambda's Invoke path (the fast stub);
- the C reference: nginx as a keep-alive reverse proxy to that upstream;
- the gateway's krakend.json: /proxy (one HTTP backend), /merge (three, allow/mapping/group), /sequential (two
  chained calls), /flatmap (flatmap_filter on a backend and the merge), /lambda, and /jwt
  (/proxy behind `auth/validator`: RS256, the key set from a local file, one token for the whole run), /breaker
  (/proxy behind a `qos/circuit-breaker` that stays closed), /cached (`qos/http-cache` over the upstream's /cached,
  which says `Cache-Control: max-age=3600`: after the first call every request is a hit), /lua (/proxy with a small
  `modifier/lua-proxy` pre script).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

UPSTREAM_BODY = '{"message":"Hello, World!","from":"upstream"}'
MERGE_BODIES = {
    "a": '{"id":1,"name":"Ana","email":"ana@example.com","internal":{"shard":7}}',
    "b": '{"message":"Hello","lang":"en","score":0.5}',
    "c": '{"items":[1,2,3],"total":3,"page":{"n":1,"of":1}}',
}
LAMBDA_BODY = '{"message":"Hello, World!","from":"lambda"}'
FUNCTION = "bench"

_COMMON = """daemon off;
master_process on;
worker_processes 1;
pid {dir}/{name}.pid;
error_log {dir}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/{name}-body;
  proxy_temp_path {dir}/{name}-proxy;
  fastcgi_temp_path {dir}/{name}-fastcgi;
  uwsgi_temp_path {dir}/{name}-uwsgi;
  scgi_temp_path {dir}/{name}-scgi;
  # Never close a benchmark connection (the default closes after 1000 requests).
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  default_type application/json;
{body}
}}
"""


def _nginx(dir: Path, name: str, body: str) -> Path:
    path = dir / f"{name}.conf"
    path.write_text(_COMMON.format(dir=dir, name=name, body=body))
    return path


def upstream_conf(dir: Path, port: int) -> Path:
    merge = "\n".join(f"    location = /{k} {{ return 200 '{v}'; }}" for k, v in MERGE_BODIES.items())
    return _nginx(
        dir,
        "upstream",
        f"""  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = / {{ return 200 '{UPSTREAM_BODY}'; }}
    location = /cached {{ add_header Cache-Control "max-age=3600"; return 200 '{UPSTREAM_BODY}'; }}
{merge}
    # Lambda's Invoke API, answered at once (the request body is read and discarded).
    location ~ ^/2015-03-31/functions/[^/]+/invocations$ {{
      add_header x-amzn-RequestId 00000000-0000-0000-0000-000000000000;
      return 200 '{LAMBDA_BODY}';
    }}
  }}""",
    )


def proxy_conf(dir: Path, port: int, upstream_port: int) -> Path:
    return _nginx(
        dir,
        "proxy",
        f"""  upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}""",
    )


CORS_ORIGIN = "https://app.example.com"
CEL_CHECK = "req_method == 'GET' && req_headers['X-Tenant'][0] == 'a'"
SCHEMA = {
    "type": "object",
    "required": ["email", "items"],
    "properties": {
        "email": {"type": "string", "minLength": 3},
        "items": {"type": "array", "items": {"type": "object", "required": ["sku"]}, "maxItems": 20},
    },
}
SCHEMA_BODY = '{"email":"ana@example.com","items":[{"sku":"a1","qty":2},{"sku":"b7","qty":1}]}'


def jwt_token(dir: Path) -> str:
    """An RS256 token for /jwt, valid for an hour, and its public key as a JWK set file in `dir` (written once)."""
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, parameters={"kid": "bench"})
    (dir / "jwks.json").write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    now = int(time.time())
    return jwt.encode(
        {"alg": "RS256", "kid": "bench"},
        {
            "sub": "bench-user",
            "aud": "bench",
            "iss": "https://idp.bench",
            "iat": now,
            "exp": now + 3600,
            "roles": ["user"],
        },
        key,
    )


def gateway_conf(
    dir: Path,
    port: int,
    upstream_port: int,
    metrics_port: int | None = None,
    name: str = "krakend.json",
    cors: bool = False,
    redis_port: int = 6379,
) -> Path:
    """The gateway's config; with `metrics_port`, `telemetry/metrics` is on (the observability-cost scenarios);
    with `cors`, `security/cors` as a browser-facing API would have it (the CORS-cost scenario).
    /jwt needs the key set that jwt_token() writes; /ratelimit_redis a redis-server on `redis_port` (connected to on
    its first request only). Both rate limits admit everything: they measure the cost of the check."""
    admit_all = {"max_rate": 1e9, "client_max_rate": 1e9, "strategy": "ip"}
    host = [f"http://127.0.0.1:{upstream_port}"]
    config = {
        "version": 3,
        "port": port,
        "timeout": "5s",
        "host": host,
        "endpoints": [
            {"endpoint": "/proxy", "backend": [{"url_pattern": "/"}]},
            # /proxy behind one validation/cel check on the method and a forwarded header
            {
                "endpoint": "/cel",
                "input_headers": ["X-Tenant"],
                "backend": [{"url_pattern": "/"}],
                "extra_config": {"validation/cel": [{"check_expr": CEL_CHECK}]},
            },
            # /proxy as a POST whose JSON body is validated by validation/json-schema (SCHEMA_BODY, valid)
            {
                "endpoint": "/schema",
                "method": "POST",
                "backend": [{"url_pattern": "/"}],
                "extra_config": {"validation/json-schema": SCHEMA},
            },
            {
                "endpoint": "/jwt",
                "backend": [{"url_pattern": "/"}],
                "extra_config": {
                    "auth/validator": {
                        "alg": "RS256",
                        "jwk_local_path": str(dir / "jwks.json"),
                        "audience": ["bench"],
                        "issuer": "https://idp.bench",
                        "roles": ["user"],
                        "propagate_claims": [["sub", "X-User"]],
                    }
                },
            },
            # /proxy with a circuit breaker that stays closed (the upstream never fails): its per-call cost
            {
                "endpoint": "/breaker",
                "backend": [
                    {
                        "url_pattern": "/",
                        "extra_config": {
                            "qos/circuit-breaker": {"interval": 60, "timeout": 10, "max_errors": 5, "name": "bench"}
                        },
                    }
                ],
            },
            # /proxy with a small modifier/lua-proxy pre script (one header set from another): a script run's cost
            {
                "endpoint": "/lua",
                "backend": [{"url_pattern": "/"}],
                "extra_config": {
                    "modifier/lua-proxy": {
                        "pre": 'local r = request.load(); r:headers("X-Bench", r:method() .. " " .. r:path())'
                    }
                },
            },
            # /proxy's body from a reply the upstream lets caches keep for an hour: the cost of a cache hit
            {"endpoint": "/cached", "backend": [{"url_pattern": "/cached", "extra_config": {"qos/http-cache": {}}}]},
            {
                "endpoint": "/ratelimit",
                "backend": [{"url_pattern": "/"}],
                "extra_config": {"qos/ratelimit/router": admit_all},
            },
            {
                "endpoint": "/ratelimit_redis",
                "backend": [{"url_pattern": "/"}],
                "extra_config": {"qos/ratelimit/router/redis": {**admit_all, "connection_pool": "bench"}},
            },
            {
                "endpoint": "/merge",
                "backend": [
                    {"url_pattern": "/a", "allow": ["id", "name", "internal.shard"], "group": "user"},
                    {"url_pattern": "/b", "mapping": {"message": "greeting"}, "deny": ["score"]},
                    {"url_pattern": "/c", "allow": ["items", "total"], "mapping": {"total": "count"}, "group": "list"},
                ],
            },
            # the sequential proxy: the second call's URL takes a field of the first reply
            {
                "endpoint": "/sequential",
                "backend": [
                    {"url_pattern": "/a", "allow": ["id", "name"]},
                    {"url_pattern": "/b?user={resp0_id}", "allow": ["message"]},
                ],
                "extra_config": {"proxy": {"sequential": True}},
            },
            # flatmap_filter on a backend and on the endpoint's merge
            {
                "endpoint": "/flatmap",
                "backend": [
                    {
                        "url_pattern": "/a",
                        "extra_config": {"proxy": {"flatmap_filter": [{"type": "del", "args": ["internal", "email"]}]}},
                    },
                    {"url_pattern": "/c"},
                ],
                "extra_config": {
                    "proxy": {
                        "flatmap_filter": [
                            {"type": "move", "args": ["items", "list"]},
                            {"type": "del", "args": ["page"]},
                        ]
                    }
                },
            },
            {
                "endpoint": "/lambda",
                "backend": [
                    {
                        "url_pattern": "/",
                        "extra_config": {
                            "backend/lambda": {
                                "function_name": FUNCTION,
                                "region": "us-east-1",
                                "endpoint": host[0],
                            }
                        },
                    }
                ],
            },
        ],
    }
    config["extra_config"] = {"redis": {"connection_pools": [{"name": "bench", "address": f"127.0.0.1:{redis_port}"}]}}
    if metrics_port:
        config["extra_config"]["telemetry/metrics"] = {"listen_address": f"127.0.0.1:{metrics_port}"}
    if cors:
        config["extra_config"]["security/cors"] = {
            "allow_origins": [CORS_ORIGIN, "https://*.example.org"],
            "allow_methods": ["GET", "POST", "PUT"],
            "allow_headers": ["Authorization", "Content-Type"],
            "expose_headers": ["X-Request-Id"],
            "allow_credentials": True,
            "max_age": "12h",
        }
    path = dir / name
    path.write_text(json.dumps(config, indent=2))
    return path
