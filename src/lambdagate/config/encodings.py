"""Encoding names in a config, read as KrakenD reads them: unknown names are not errors in KrakenD, so here they
are accepted with a warning naming the value and what it is read as.

Lura looks a backend's `encoding` up lower-cased and decodes an unknown one as JSON ("no_op", "form",
"fast-json" and "negotiate" in real configs are all JSON there). An unknown `output_encoding` renders with the
single backend's encoding when that is also an output encoding (e.g. "string", "xml"), else as JSON.
"""

from __future__ import annotations

from lambdagate.config.model import BACKEND_ENCODINGS, OUTPUT_ENCODINGS, EndpointConfig, ServiceConfig
from lambdagate.errors import ConfigIssue as _issue


def check_service_encoding(service: ServiceConfig, warnings: list) -> None:
    if service.output_encoding not in OUTPUT_ENCODINGS:
        warnings.append(
            _issue(
                "output_encoding",
                f"unknown encoding {service.output_encoding!r}: endpoints without their own render as JSON "
                "(or as their single backend's encoding), as KrakenD does",
            )
        )


def resolve_encodings(service: ServiceConfig, endpoint: EndpointConfig, path: str, warnings: list) -> str:
    """The endpoint's output encoding, written back on it, and its backends' encodings made known names."""
    chosen = endpoint.output_encoding or service.output_encoding
    if chosen not in OUTPUT_ENCODINGS:
        single = endpoint.backend[0].encoding if len(endpoint.backend) == 1 else None
        read_as = single if single in OUTPUT_ENCODINGS else "json"
        if endpoint.output_encoding is not None:
            warnings.append(_issue(f"{path}.output_encoding", f"unknown encoding {chosen!r}: rendered as {read_as!r}"))
        chosen = read_as
    endpoint.output_encoding = chosen
    for j, backend in enumerate(endpoint.backend):
        name = backend.encoding.lower()
        if name not in BACKEND_ENCODINGS:
            warnings.append(
                _issue(f"{path}.backend[{j}].encoding", f"unknown encoding {backend.encoding!r}: decoded as JSON")
            )
            name = "json"
        backend.encoding = name
    return chosen
