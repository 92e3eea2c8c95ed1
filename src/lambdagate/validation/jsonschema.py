"""`validation/json-schema`: the request body validated against a JSON Schema before the backends (krakend-jsonschema).

```json
"extra_config": {"validation/json-schema": {"type": "object", "required": ["email"]}}
```
The namespace's value is the schema itself. Drafts 4, 6, 7, 2019-09 and 2020-12, by its `$schema`; without one,
draft 7 (KrakenD's validator reads drafts 4 to 7 alike). The schema is compiled once, when the config is read, with
jsonschema-rs (Rust): ~1.5 µs for a small body, parsing included.

A body that is empty, not JSON, nested deeper than 128 levels or not valid gets 400 (KrakenD's status), and no
backend is called. The validation errors are always logged; they reach the client only when the service's
`router` sets `return_error_msg` (KrakenD's switch for showing pipe errors).

Remote references: the gateway never fetches a URL a schema names (jsonschema-rs would, by default), so a schema
with a remote `$ref` is refused. `"lambdagate/server": {"allow_remote_schema_refs": true}` lets it fetch them once,
when the config is read (http and https only, 5 s and 1 MiB each).
"""

from __future__ import annotations

import logging
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jsonschema_rs
import orjson

from lambdagate.backends.reply_data import MAX_JSON_DEPTH, TooDeep, load_json
from lambdagate.config import guards
from lambdagate.config.namespaces import Namespace, NamespaceContext, NamespaceError
from lambdagate.config.server_options import server_options
from lambdagate.errors import BackendError
from lambdagate.pipeline.fanout import MergedResponse

if TYPE_CHECKING:
    from lambdagate.backends import Resources
    from lambdagate.config.model import EndpointConfig, ServiceConfig
    from lambdagate.pipeline import EndpointProxy, ProxyWrapper
    from lambdagate.proxy import ProxyRequest

NAMESPACE = "validation/json-schema"
OLD_NAME = "github.com/devopsfaith/krakend-jsonschema"
log = logging.getLogger("lambdagate.validation.jsonschema")

MAX_ERRORS = 10  # listed per refused body (in the log, and to the client when it is shown)
MAX_ERROR_CHARS = 300  # per error: a message quotes the offending value, which the client chose
REMOTE_TIMEOUT = 5.0
REMOTE_MAX_BYTES = 1024 * 1024
# The drafts' own meta-schemas are built into jsonschema-rs; naming one is no remote reference.
_DRAFTS = {
    "http://json-schema.org/draft-04/schema": jsonschema_rs.Draft4Validator,
    "http://json-schema.org/draft-06/schema": jsonschema_rs.Draft6Validator,
    "http://json-schema.org/draft-07/schema": jsonschema_rs.Draft7Validator,
    "https://json-schema.org/draft/2019-09/schema": jsonschema_rs.Draft201909Validator,
    "https://json-schema.org/draft/2020-12/schema": jsonschema_rs.Draft202012Validator,
}


class RemoteRefused(Exception):
    pass


def refuse_remote(uri: str) -> Any:
    """jsonschema-rs's retriever when remote references are not allowed: nothing is fetched."""
    raise RemoteRefused(f"remote reference {uri!r} is not fetched")


def fetch_remote(uri: str) -> Any:
    """The retriever when `allow_remote_schema_refs` is on: one bounded GET per referenced document."""
    if not uri.startswith(("http://", "https://")):
        raise RemoteRefused(f"{uri!r}: only http and https references are fetched")
    with urllib.request.urlopen(uri, timeout=REMOTE_TIMEOUT) as resp:
        body = resp.read(REMOTE_MAX_BYTES + 1)
    if len(body) > REMOTE_MAX_BYTES:
        raise RemoteRefused(f"{uri!r} is larger than {REMOTE_MAX_BYTES} bytes")
    return orjson.loads(body)


def _validator_class(schema: Any) -> Any:
    declared = schema.get("$schema") if isinstance(schema, dict) else None
    if not isinstance(declared, str):
        return jsonschema_rs.Draft7Validator
    return _DRAFTS.get(declared.rstrip("#")) or jsonschema_rs.validator_for


def compile_schema(schema: Any, allow_remote: bool) -> Any:
    """The compiled validator; NamespaceError saying why a schema cannot be one."""
    retriever = fetch_remote if allow_remote else refuse_remote
    try:
        return _validator_class(schema)(schema, retriever=retriever)
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "is not fetched" in text or "only http and https" in text:
            text += ": the gateway fetches no URL a schema names unless lambdagate/server allow_remote_schema_refs"
        raise NamespaceError([("", f"is not a usable JSON Schema: {text}")]) from None


def parse(value: Any, ctx: NamespaceContext) -> Any:
    if not isinstance(value, (dict, bool)):
        raise NamespaceError([("", 'must be a JSON Schema object such as {"type": "object", "required": ["id"]}')])
    return compile_schema(value, server_options(ctx.service).allow_remote_schema_refs)


JSON_SCHEMA_NAMESPACE = Namespace(NAMESPACE, "endpoint", parse, aliases=(OLD_NAME,))


@dataclass(frozen=True, slots=True)
class Refusal:
    message: str  # short and safe for the client
    errors: list[str]  # the validation errors: logged, and shown when the service says so


def refusal(validator: Any, body: bytes) -> Refusal | None:
    """Why `body` is refused, or None when it is valid."""
    if not body:
        return Refusal("could not validate an empty body", [])
    try:
        doc = load_json(body)
    except TooDeep:
        return Refusal(f"request body nested deeper than {MAX_JSON_DEPTH} levels", [])
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):  # orjson's own limit (1024 levels): deeper still
            return Refusal(f"request body nested deeper than {MAX_JSON_DEPTH} levels", [])
        return Refusal("request body is not JSON", [])
    if validator.is_valid(doc):
        return None
    errors = []
    for error in validator.iter_errors(doc):
        where = "/".join(str(p) for p in error.instance_path)
        errors.append(f"/{where}: {error.message}"[:MAX_ERROR_CHARS])
        if len(errors) == MAX_ERRORS:
            break
    return Refusal("request body does not match the schema", errors)


def shows_errors(service: ServiceConfig) -> bool:
    """KrakenD's `router.return_error_msg`: pipe errors go to the client."""
    for key, value in service.extra_config.items():
        if guards.canonical(key) == "router" and isinstance(value, dict):
            return value.get("return_error_msg") is True
    return False


async def body_validation(
    service: ServiceConfig, endpoint: EndpointConfig, resources: Resources
) -> ProxyWrapper | None:
    """The endpoint's schema check, before its backends (plugins.ENDPOINT_WRAPPERS)."""
    validator = endpoint.namespaces.get(NAMESPACE)
    if validator is None:
        return None
    where, show = f"{endpoint.method} {endpoint.endpoint}", shows_errors(service)

    def wrap(proxy: EndpointProxy) -> EndpointProxy:
        async def validated(req: ProxyRequest) -> MergedResponse:
            refused = refusal(validator, req.body)
            if refused is None:
                return await proxy(req)
            log.info("%s: %s %s request_id=%s", where, refused.message, refused.errors, req.request_id)
            details = {"errors": refused.errors} if show and refused.errors else None
            return MergedResponse(None, False, BackendError(refused.message, status=400, details=details))

        return validated

    return wrap
