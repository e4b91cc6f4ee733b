"""The reason-code catalogue: code -> plain-language adverse-action text."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import resources
from types import MappingProxyType

import yaml


@cache
def reason_catalogue() -> Mapping[str, str]:
    """Return the catalogue shipped with the package (read once)."""
    text = resources.files(__package__).joinpath("reasons.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not all(
        isinstance(code, str) and isinstance(reason, str) for code, reason in data.items()
    ):
        raise ValueError("reasons.yaml must map reason codes to texts")
    return MappingProxyType(dict(data))


def reason_text(code: str) -> str:
    """Return the applicant-facing text of ``code``; unknown codes raise ``KeyError``."""
    return reason_catalogue()[code]
