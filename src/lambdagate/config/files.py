"""How the config's file keys (TLS certificates, JWK sets, Lua sources) say a file cannot be read: the file, why
(in words, not an errno), and what to write instead. The JSON path of the key is the issue's path.

Pure functions: this module imports nothing from the gateway.
"""

from __future__ import annotations

import errno
import os
import stat

# What each kind of file must be, as the messages say it (TLS keys of the server and of backend calls, JWT CAs).
CA_FILE = "a PEM file of CA certificates"
CERT_FILE = "a PEM certificate file"
KEY_FILE = "a PEM private key file"

_WHY = {
    errno.ENOENT: "does not exist",
    errno.ENOTDIR: "does not exist",
    errno.EACCES: "cannot be read (permission denied)",
    errno.EPERM: "cannot be read (permission denied)",
    errno.EISDIR: "is a directory",
}


def why(exc: OSError) -> str:
    """Why a file cannot be read, as the rest of a sentence that starts with the file."""
    return _WHY.get(exc.errno or 0) or f"cannot be read ({exc.strerror or type(exc).__name__})"


def unreadable(path: str, exc: OSError, kind: str) -> str:
    """The message of a file key whose file cannot be read; `kind` is what the file must be ("a PEM file", ...)."""
    relative = "" if os.path.isabs(path) else " (a relative path is read from the working directory)"
    return f"the file {path!r} {why(exc)}: write the path of {kind} the gateway can read{relative}"


def problem(path: str, kind: str) -> str | None:
    """`unreadable`'s message when `path` is no regular file this process may read, else None (checked without
    opening it: a named pipe would block)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return unreadable(path, exc, kind)
    if stat.S_ISDIR(mode):
        return unreadable(path, IsADirectoryError(errno.EISDIR, "Is a directory"), kind)
    if not stat.S_ISREG(mode):
        return unreadable(path, OSError(errno.EINVAL, "not a regular file"), kind)
    if not os.access(path, os.R_OK):
        return unreadable(path, PermissionError(errno.EACCES, "Permission denied"), kind)
    return None
