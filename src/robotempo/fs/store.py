"""Object-store settings and faults: S3 client options from `storage_options` and the AWS environment, and
which client errors are store faults (denied, no bucket, unreachable) rather than bad files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from robotempo.env import env_int
from robotempo.errors import StorageError

RETRIES_ENV = "ROBOTEMPO_S3_RETRIES"
DEFAULT_RETRIES = 10
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 10.0  # no byte for this long: the request is abandoned (then retried)

_S3_ALIASES = {  # fsspec / boto-style names users already write -> pyarrow's names
    "endpoint_url": "endpoint_override",
    "region_name": "region",
    "anon": "anonymous",
    "key": "access_key",
    "aws_access_key_id": "access_key",
    "secret": "secret_key",
    "aws_secret_access_key": "secret_key",
    "token": "session_token",
    "aws_session_token": "session_token",
}
CREDENTIALS_FIX = (
    "pass storage_options={'access_key': ..., 'secret_key': ...} (or 'anonymous': True for a public bucket), "
    "or set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE"
)
ENDPOINT_FIX = (
    "check the endpoint (storage_options={'endpoint_override': 'http://host:port'} or AWS_ENDPOINT_URL) "
    f"and the network; transient faults were retried ({RETRIES_ENV} sets how often)"
)


def split_scheme(text: str) -> tuple[str, str]:
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme.isidentifier() and len(scheme) > 1:  # "C://" on Windows is a drive, not a scheme
            return scheme.lower(), rest
    return "", text


def s3_options(storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments for `pyarrow.fs.S3FileSystem`: aliases resolved, finite timeouts, bounded retries."""
    opts: dict[str, Any] = {}
    for key, value in (storage_options or {}).items():
        opts[_S3_ALIASES.get(key, key)] = value
    endpoint = (
        opts.get("endpoint_override")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    if endpoint:
        scheme, rest = split_scheme(str(endpoint))
        opts["endpoint_override"] = rest.rstrip("/")
        if scheme:
            opts.setdefault("scheme", scheme)
    if "region" not in opts and (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        opts["region"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    opts.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    opts.setdefault("request_timeout", REQUEST_TIMEOUT_S)
    if "retry_strategy" not in opts:
        opts["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(
            max_attempts=env_int(RETRIES_ENV, DEFAULT_RETRIES)
        )
    return opts


_DENIED = (
    "ACCESS_DENIED",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "HTTP response code: 403",
)
_NO_BUCKET = ("NoSuchBucket", "NO_SUCH_BUCKET")
_UNREACHABLE = ("NETWORK_CONNECTION", "curlCode", "Couldn't connect", "timed out", "Connection refused")


def classify(error: BaseException, where: Path | str) -> BaseException:
    """`StorageError` for a denied, unknown-bucket or unreachable-store failure; other errors unchanged."""
    if (
        isinstance(error, StorageError)
        or not isinstance(error, OSError)
        or isinstance(error, FileNotFoundError)
    ):
        return error
    text = str(error)
    url = str(where)
    if any(s in text for s in _DENIED):
        return StorageError(url, f"access denied ({text.strip()[:160]})", CREDENTIALS_FIX)
    if any(s in text for s in _NO_BUCKET):
        return StorageError(url, "the bucket does not exist", "check the bucket name in the root URL")
    if any(s in text for s in _UNREACHABLE) or "AWS Error" in text:
        return StorageError(url, f"the object store failed the request ({text.strip()[:200]})", ENDPOINT_FIX)
    return error
