"""`--storage-option KEY=VALUE` for commands that read a dataset root (local folder or object-store URL)."""

from __future__ import annotations

import argparse

from robotempo.errors import ConfigError

HELP = (
    "object-store setting for an s3:// ROOT, repeatable: endpoint_override=http://host:port, region=..., "
    "anonymous=true, access_key=..., secret_key=... (unset ones come from the AWS environment)"
)


def add_root_arguments(parser: argparse.ArgumentParser, many: bool = False) -> None:
    if many:
        parser.add_argument(
            "root",
            nargs="+",
            help="dataset folders or object-store URLs such as s3://bucket/prefix (several: each in turn)",
        )
    else:
        parser.add_argument(
            "root", help="the dataset folder, or an object-store URL such as s3://bucket/prefix"
        )
    parser.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE", help=HELP)


def _value(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


def storage_options(args: argparse.Namespace) -> dict:
    out = {}
    for item in getattr(args, "storage_option", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"--storage-option {item!r} is not KEY=VALUE. Fix: e.g. --storage-option region=eu-west-1"
            )
        out[key.strip()] = _value(value.strip())
    return out
