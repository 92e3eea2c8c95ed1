"""Regular expressions for the security namespaces, on RE2 (google-re2).

RE2 matches in time linear in the input, whatever the pattern: a pattern such as `(a+)+$` that makes Python's
`re` backtrack for ever (and `re` has no timeout) cannot stall a worker here. RE2's syntax is the one KrakenD's
Go `regexp` reads, so a KrakenD pattern means the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable

import re2


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # errors are reported as config issues, not printed to stderr
    options.never_capture = True
    return options


def pattern_error(pattern: str) -> str | None:
    """Why `pattern` is not a valid RE2 (Go) regular expression, or None when it is."""
    try:
        re2.compile(pattern, _options())
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
        return (
            f"invalid regular expression ({text}): write it in Go's (RE2) syntax, which has no "
            "backreferences or lookarounds"
        )
    return None


def pattern_set(patterns: Iterable[str], *, whole: bool = False) -> re2.Set:
    """One compiled set of valid patterns; `.Match(bytes)` is None when none matches. `whole`: a pattern must
    match the whole input (as if written `^(?:p)$`), else it may match anywhere in it."""
    matcher = re2.Set.FullMatchSet(_options()) if whole else re2.Set.SearchSet(_options())
    for pattern in patterns:
        matcher.Add(pattern)
    matcher.Compile()
    return matcher
