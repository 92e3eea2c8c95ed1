"""`lambdagate/endpoint`: per-endpoint options of the gateway's own, set in an endpoint's extra_config.

```json
"extra_config": {"lambdagate/endpoint": {"allow_encoded_slash": true}}
```
`allow_encoded_slash`: a path parameter may hold "/" or "\\" (sent percent-encoded, e.g. an S3-style key
"a%2Fb.txt"). Off by default, because upstreams that decode "%2F" would read it as another path; even when on, a
parameter with a "." or ".." segment is refused.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool

from lambdagate.config.loader import parse_namespace_model
from lambdagate.config.model import EndpointConfig
from lambdagate.config.namespaces import Namespace, NamespaceContext

NAMESPACE = "lambdagate/endpoint"


class EndpointOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    allow_encoded_slash: StrictBool = False


def parse(value: Any, ctx: NamespaceContext) -> EndpointOptions:
    return parse_namespace_model(EndpointOptions, value, ctx, '{"allow_encoded_slash": true}')


ENDPOINT_OPTIONS = Namespace(NAMESPACE, "endpoint", parse)
_DEFAULT = EndpointOptions()


def endpoint_options(endpoint: EndpointConfig) -> EndpointOptions:
    return endpoint.namespaces.get(NAMESPACE) or _DEFAULT
