"""URI-addressed storage for tasks: ``file://`` locally, ``s3://`` (any S3-compatible store) in production.

One place that turns a URI into an fsspec filesystem, so no task builds paths by hand.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Any

import fsspec

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

_s3_endpoint: str | None = None


def configure(s3_endpoint_url: str | None) -> None:
    """Point ``s3://`` URIs at an S3-compatible endpoint (MinIO, moto) instead of AWS."""
    global _s3_endpoint
    _s3_endpoint = s3_endpoint_url


def filesystem(uri: str) -> tuple[AbstractFileSystem, str]:
    """The filesystem for ``uri`` and the path inside it.

    S3 listings are never cached: fsspec shares one instance per process, and a cached listing
    hides what other processes wrote since (a sensor in the triggerer counted the inference log's
    first files for ever while serving kept adding hours of predictions)."""
    protocol = uri.split("://", 1)[0] if "://" in uri else "file"
    options: dict[str, Any] = {}
    if protocol in ("s3", "s3a"):
        options["use_listings_cache"] = False
        if _s3_endpoint:
            options["client_kwargs"] = {"endpoint_url": _s3_endpoint}
    fs, path = fsspec.core.url_to_fs(uri, **options)
    return fs, path


def join(uri: str, *parts: str) -> str:
    return posixpath.join(uri.rstrip("/"), *[p.strip("/") for p in parts])


def basename(uri: str) -> str:
    return posixpath.basename(uri.rstrip("/"))


def to_uri(fs: AbstractFileSystem, path: str) -> str:
    return str(fs.unstrip_protocol(path))


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return bool(fs.exists(path))


def makedirs(uri: str) -> None:
    fs, path = filesystem(uri)
    fs.makedirs(path, exist_ok=True)


def list_files(uri: str, patterns: list[str] | None = None) -> list[str]:
    """Files directly under ``uri`` matching any glob pattern, sorted, as URIs."""
    fs, path = filesystem(uri)
    if not fs.exists(path):
        return []
    found: set[str] = set()
    for pattern in patterns or ["*"]:
        found.update(p for p in fs.glob(posixpath.join(path, pattern)) if fs.isfile(p))
    return sorted(to_uri(fs, p) for p in found)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    return bytes(fs.cat_file(path))


def write_bytes(uri: str, data: bytes) -> str:
    """Write atomically where the filesystem allows it (local: temp file then rename)."""
    fs, path = filesystem(uri)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    if "file" in fs.protocol:
        tmp = f"{path}.tmp"
        with fs.open(tmp, "wb") as fh:
            fh.write(data)
        fs.mv(tmp, path)
    else:
        with fs.open(path, "wb") as fh:
            fh.write(data)
    return uri


def write_text(uri: str, text: str) -> str:
    return write_bytes(uri, text.encode())


def move(src_uri: str, dst_uri: str) -> str:
    fs, src = filesystem(src_uri)
    _, dst = filesystem(dst_uri)
    fs.makedirs(posixpath.dirname(dst), exist_ok=True)
    fs.mv(src, dst)
    return dst_uri


def remove(uri: str) -> None:
    fs, path = filesystem(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)
