"""Forwarding headers reach a backend with the gateway's values, never a client's.

A client can send X-Forwarded-For, X-Real-IP, Forwarded and X-Forwarded-Proto/-Host/-Port with any value,
and `input_headers` may let them through. A backend trusting them (for logs, rate limits, redirects, "is this
HTTPS?") would trust the client. lambdagate trusts no proxy in front of it, so a backend never gets the
client's: each backend type drops them and sets the ones the gateway knows itself.
"""

from __future__ import annotations

CLIENT_FORWARDING = frozenset(
    {"x-forwarded-for", "x-real-ip", "forwarded", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port"}
)


def without(headers: dict[str, str], names: frozenset[str]) -> dict[str, str]:
    """A copy of `headers` (lower-case names) without `names`; a plain copy when it has none of them."""
    if names.isdisjoint(headers):
        return dict(headers)
    return {k: v for k, v in headers.items() if k not in names}
