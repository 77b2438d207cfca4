"""The one loader of ``"package.module:attr"`` strings (agent classes, state machines,
service factories, vote hooks), the way uvicorn's ``import_from_string`` does it."""

from __future__ import annotations

import importlib
from typing import Any

from broker_agents.core.errors import CodedError, ErrorCode


class ImportFromStringError(CodedError, ValueError):
    """The string does not name an importable attribute; the message says which part.

    Also a ``ValueError`` so that a pydantic validator may raise it and config checks that
    catch ``ValueError`` name the field."""

    CODE = ErrorCode.NOT_IMPORTABLE


def parse_import_path(path: str) -> tuple[str, str]:
    """``(module, attribute)`` of ``"package.module:attr"``, checked for shape only (what a
    config validator can do without importing anything)."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ImportFromStringError(f"{path!r} must look like 'package.module:attribute'")
    return module_name, attr


def import_from_string(path: str) -> Any:
    module_name, attr = parse_import_path(path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportFromStringError(f"cannot import module {module_name!r}: {exc}") from exc
    value: Any = module
    try:
        for part in attr.split("."):
            value = getattr(value, part)
    except AttributeError:
        raise ImportFromStringError(
            f"module {module_name!r} has no attribute {attr!r}") from None
    return value
