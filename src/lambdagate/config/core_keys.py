"""The core keys KrakenD reads without effect, or under another name: comments, old names, backend input lists.

- Keys starting with "@" (`@comment`, ...) are comments KrakenD's schema allows anywhere: accepted silently, as
  `$schema` and `$id` at the top.
- The format-2 names (KrakenD 1.x) that KrakenD 2 ignores too, and other keys it does not read, are warned about
  with the key to write instead.
- A backend's `input_headers` and `input_query_strings` narrow what its endpoint forwards, as Lura's filters: only
  names in both lists reach that backend, and "*" there is a name like any other (it matches nothing), so both
  are warned about.
"""

from __future__ import annotations

import re

from lambdagate.errors import ConfigIssue

# The last step of a path is a key starting with "@": `endpoints[0].@comment`, `extra_config["@comment"]`.
_COMMENT_STEP = re.compile(r'(?:^|\.)@[^.\[\]"]*$|\["@[^"]*"\]$')
# Keys of older formats or other products → what to write in KrakenD's format 3.
RENAMED = {
    "headers_to_pass": "input_headers",
    "querystring_params": "input_query_strings",
    "whitelist": "allow",
    "blacklist": "deny",
}
OTHER_KEYS = {
    "output_headers": "not a KrakenD key, ignored (KrakenD ignores it too): a backend's reply headers reach the client "
    'only with "output_encoding": "no-op"',
    "timeout": "ignored, as KrakenD does: a backend's calls have its endpoint's timeout (set \"timeout\" there)",
    "concurrent_calls": 'ignored, as KrakenD does: set "concurrent_calls" on the endpoint',
}
# What the gateway itself adds to every backend request; a backend's input_headers may keep or drop them.
GATEWAY_HEADERS = ("X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Via", "User-Agent")


def is_comment(key: str) -> bool:
    return key.startswith("@")


def is_comment_warning(issue: ConfigIssue) -> bool:
    """A warning that a comment key is not read (the namespaces warn about unknown keys in their own words)."""
    return "not supported, ignored" in issue.message and _COMMENT_STEP.search(issue.path) is not None


def unknown_key_message(key: str) -> str | None:
    """The warning for a core key lambdagate does not read; None for a comment."""
    if is_comment(key):
        return None
    if key in RENAMED:
        return f'the name of KrakenD 1.x (format version 2), ignored by KrakenD 2 and later too: write "{RENAMED[key]}"'
    return OTHER_KEYS.get(key, "not supported, ignored")


def backend_input_issues(
    endpoint_headers: list[str], endpoint_query: list[str], headers: list[str], query: list[str]
) -> list[tuple[str, str]]:
    """Warnings (key, message) about a backend's input lists that cannot do what they seem to."""
    out = []
    forwarded = {h.lower() for h in endpoint_headers} | {h.lower() for h in GATEWAY_HEADERS}
    for key, names, given, folded in (
        ("input_headers", headers, forwarded, str.lower),
        ("input_query_strings", query, set(endpoint_query), str),
    ):
        if "*" in names:
            out.append(
                (
                    key,
                    '"*" means every name only in the endpoint\'s list; here it matches none, as in KrakenD: '
                    "list the names this backend gets",
                )
            )
        if "*" in (endpoint_headers if key == "input_headers" else endpoint_query):
            continue
        missing = [n for n in names if n != "*" and folded(n) not in given]
        if missing:
            out.append(
                (
                    key,
                    f"{', '.join(map(repr, missing))} not in the endpoint's {key}: never sent (a "
                    "backend's list only narrows its endpoint's)",
                )
            )
    return out
