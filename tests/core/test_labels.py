"""Labels, pure: what a label may be, patches merged as RFC 7396 says, the list filter."""

from __future__ import annotations

import pytest

from pgkeep.core import labels
from pgkeep.errors import InvalidInput


def test_a_patch_sets_replaces_and_removes_with_null() -> None:
    current = (("reason", "deploy"), ("team", "shop"))
    merged = labels.merge(current, {"reason": "pre-migration", "team": None, "app.v": "2.3.1"})
    assert merged == (("app.v", "2.3.1"), ("reason", "pre-migration"))
    assert labels.merge(current, {"absent": None}) == current
    assert labels.merge(current, {}) == current


@pytest.mark.parametrize(
    ("patch", "said"),
    [
        ({"": "x"}, "label key '' is not allowed"),
        ({"a" * 41: "x"}, "is not allowed"),
        ({"bad key": "x"}, "label key 'bad key' is not allowed"),
        ({"k/v": "x"}, "is not allowed"),
        ({"k": 1}, "label 'k' must be a string or null"),
        ({"k": ["x"]}, "must be a string or null"),
        ({"k": "x" * 201}, "label 'k' is longer than 200 characters"),
    ],
)
def test_bad_labels_are_refused_naming_the_label(patch: dict[str, object], said: str) -> None:
    with pytest.raises(InvalidInput, match=said.replace("(", r"\(")):
        labels.merge((), patch)


def test_edges_are_allowed() -> None:
    key = "A-z_0.9" + "k" * 33
    assert len(key) == 40
    assert labels.merge((), {key: "v" * 200}) == ((key, "v" * 200),)


def test_at_most_sixteen_labels() -> None:
    sixteen = {f"k{i}": "v" for i in range(16)}
    assert len(labels.merge((), sixteen)) == 16
    with pytest.raises(InvalidInput, match="at most 16 labels") as caught:
        labels.merge(labels.merge((), sixteen), {"one.more": "v"})
    assert caught.value.details == "this would give it 17"
    # Removing one while adding one stays within the bound.
    assert len(labels.merge(labels.merge((), sixteen), {"k0": None, "new": "v"})) == 16


def test_labels_given_at_create_may_not_be_null() -> None:
    with pytest.raises(InvalidInput, match="label 'reason' has no value"):
        labels.checked({"reason": None})
    assert labels.checked({"b": "2", "a": "1"}) == (("a", "1"), ("b", "2"))


def test_the_filter_is_key_equals_value() -> None:
    assert labels.parse_filter("reason=pre-migration") == ("reason", "pre-migration")
    assert labels.parse_filter("url=a=b") == ("url", "a=b")
    assert labels.parse_filter("empty=") == ("empty", "")
    for bad in ("reason", "=x", "bad key=x"):
        with pytest.raises(InvalidInput, match="is not KEY=VALUE"):
            labels.parse_filter(bad)


def test_a_backup_matches_when_it_carries_every_label_asked_for() -> None:
    held = (("reason", "deploy"), ("team", "shop"))
    assert labels.matches(held, [])
    assert labels.matches(held, [("reason", "deploy")])
    assert labels.matches(held, [("reason", "deploy"), ("team", "shop")])
    assert not labels.matches(held, [("reason", "deploy"), ("team", "crm")])
    assert not labels.matches(held, [("other", "")])
