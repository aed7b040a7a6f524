"""Labels: short key/value notes on a backup ("reason": "pre-migration"), kept in its signed
manifest and carried to its copies. Pure: what a label may be, a patch merged (RFC 7396: a
null value removes the label), a list filter. A label never changes retention; pins do."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pgkeep.errors import InvalidInput

MAX_LABELS = 16
MAX_VALUE = 200
KEY = re.compile(r"[A-Za-z0-9_.-]{1,40}")

Labels = tuple[tuple[str, str], ...]  # sorted by key, as manifests keep them


def checked(labels: Mapping[str, object]) -> Labels:
    """Labels as given at create, every one checked; InvalidInput naming the first bad one."""
    for key, value in labels.items():
        if value is None:
            raise InvalidInput(f"label {_shown(key)} has no value", "a label's value is a string")
    return merge((), labels)


def merge(current: Labels, patch: Mapping[str, object]) -> Labels:
    """`current` with `patch` applied: a string sets a label, null removes it."""
    merged = dict(current)
    for key, value in patch.items():
        if not isinstance(key, str) or not KEY.fullmatch(key):
            raise InvalidInput(
                f"label key {_shown(key)} is not allowed",
                "keys are 1 to 40 of A-Z, a-z, 0-9, '_', '.', '-'",
            )
        if value is None:
            merged.pop(key, None)
        elif not isinstance(value, str):
            raise InvalidInput(f"label {key!r} must be a string or null", "")
        elif len(value) > MAX_VALUE:
            raise InvalidInput(
                f"label {key!r} is longer than {MAX_VALUE} characters", f"it has {len(value)}"
            )
        else:
            merged[key] = value
    if len(merged) > MAX_LABELS:
        raise InvalidInput(
            f"a backup has at most {MAX_LABELS} labels", f"this would give it {len(merged)}"
        )
    return tuple(sorted(merged.items()))


def parse_filter(text: str) -> tuple[str, str]:
    """`?label=reason=pre-migration` as (key, value)."""
    key, sep, value = text.partition("=")
    if not sep or not KEY.fullmatch(key):
        raise InvalidInput(
            f"label filter {_shown(text)} is not KEY=VALUE", "for example label=reason=deploy"
        )
    return key, value


def matches(labels: Labels, wanted: list[tuple[str, str]]) -> bool:
    """Whether a backup carries every label asked for."""
    held = dict(labels)
    return all(held.get(key) == value for key, value in wanted)


def _shown(value: object) -> str:
    return repr(str(value)[:60])
