"""A batch named by a request must lie in the landing zone: anything else is refused unread.

``batch_uri`` comes from outside (an asset event's extra, a run's conf), and ingest reads the
file it names and then moves it (archive or quarantine). So before anything is read or moved it
must have the scheme and bucket of ``storage.landing_uri`` and lie under its prefix: no ``..``
segment, no query or credentials, and, on a local disk, no symlink that resolves out of it. A
refused URI is a definite task failure (``Fail``, no retry) whose message shows the URI without
credentials or query and nothing of the file.
"""

from __future__ import annotations

import os
import posixpath
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

from tasks.common.outcomes import Fail

if TYPE_CHECKING:
    from config import Settings

SHOWN = 300
"""Characters of a refused URI the message shows."""


class Refused(Fail):
    """A ``batch_uri`` outside the landing zone: nothing was read or moved."""


def shown(uri: str) -> str:
    """The URI as a message may show it: no credentials, no query, bounded length."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        text = f"{parts.scheme}://{host}{parts.path}" if parts.scheme else parts.path
    except ValueError:
        text = "<malformed URI>"
    text = text.encode("ascii", "backslashreplace").decode()
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _refuse(uri: str, why: str, landing: str) -> Refused:
    return Refused(
        f"batch_uri {shown(uri)!r} refused: {why}; only files under the landing zone {landing} are "
        "ingested (nothing was read or moved)"
    )


def _has_port(parts: SplitResult) -> bool:
    try:
        return parts.port is not None
    except ValueError:
        return True


def _segments_ok(path: str) -> bool:
    return not any(seg in ("..", ".") for seg in path.split("/")) and "\x00" not in path


def _local(uri: str, parts: SplitResult, root: SplitResult, landing: str) -> str:
    if parts.netloc not in ("", "localhost"):
        raise _refuse(uri, "a file URI must be absolute (file:///...)", landing)
    base = os.path.realpath(root.path)
    resolved = os.path.realpath(parts.path)
    if os.path.commonpath([base, resolved]) != base or resolved == base:
        raise _refuse(uri, "it resolves outside the landing zone", landing)
    return f"file://{posixpath.normpath(parts.path)}"


def _bucket(uri: str, parts: SplitResult, root: SplitResult, landing: str) -> str:
    if parts.netloc != root.netloc:
        raise _refuse(uri, f"bucket {parts.netloc!r} is not the landing zone's", landing)
    prefix = root.path.strip("/")
    key = parts.path.lstrip("/")
    if prefix and not key.startswith(prefix + "/"):
        raise _refuse(uri, "it is not under the landing zone's prefix", landing)
    if not key or key.endswith("/"):
        raise _refuse(uri, "it names no file", landing)
    return f"{parts.scheme}://{parts.netloc}/{key}"


def confine(settings: Settings, uri: str) -> str:
    """The URI, normalised, when it names a file in the landing zone; else ``Refused``."""
    landing = settings.storage.landing_uri
    try:
        parts, root = urlsplit(uri), urlsplit(landing)
    except ValueError as exc:
        raise _refuse(uri, f"not a URI ({exc})", landing) from exc
    if parts.scheme != root.scheme:
        raise _refuse(uri, f"scheme {parts.scheme or '(none)'!r} is not the landing zone's", landing)
    if parts.query or parts.fragment or parts.username or parts.password or _has_port(parts):
        raise _refuse(uri, "a query, fragment, port or credentials are not allowed", landing)
    if not _segments_ok(parts.path):
        raise _refuse(uri, "'.' and '..' segments are not allowed", landing)
    if parts.scheme == "file":
        return _local(uri, parts, root, landing)
    return _bucket(uri, parts, root, landing)


def is_confined(settings: Settings, uri: str) -> bool:
    try:
        confine(settings, uri)
    except Refused:
        return False
    return True
