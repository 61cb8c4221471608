"""The detector registry and the rules every params class follows for the config loader."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin

import pytest

from models import DETECTOR_TYPES, Detection, Detector, ThresholdDetector, ThresholdParams

SCALARS = (int, float, bool, str)


def allowed_annotation(tp: Any) -> bool:
    """int, float, bool, str, Literal of strings, or one of those ``| None``."""
    if tp in SCALARS:
        return True
    if get_origin(tp) is Literal:
        return all(isinstance(arg, str) for arg in get_args(tp))
    if get_origin(tp) in (typing.Union, types.UnionType):
        rest = [arg for arg in get_args(tp) if arg is not type(None)]
        return len(rest) == 1 and len(get_args(tp)) == 2 and allowed_annotation(rest[0])
    return False


def test_allowed_annotation_rejects_what_the_loader_cannot_read() -> None:
    assert allowed_annotation(float | None)
    assert allowed_annotation(Literal["a", "b"])
    assert not allowed_annotation(list[int])
    assert not allowed_annotation(Literal[1, 2])
    assert not allowed_annotation(int | str)
    assert not allowed_annotation(typing.Optional[list[int]])  # noqa: UP045


def test_registry_keys_match_names() -> None:
    assert "threshold" in DETECTOR_TYPES
    for key, entry in DETECTOR_TYPES.items():
        assert entry.name == key
        assert entry.summary.strip()
        assert "\n" not in entry.summary


@pytest.mark.parametrize("name", sorted(DETECTOR_TYPES))
def test_params_class_follows_the_loader_rules(name: str) -> None:
    params = DETECTOR_TYPES[name].params
    assert dataclasses.is_dataclass(params)
    assert params.__dataclass_params__.frozen  # type: ignore[attr-defined]
    hints = typing.get_type_hints(params)
    for f in dataclasses.fields(params):
        assert allowed_annotation(hints[f.name]), f"{name}.{f.name}: {hints[f.name]}"
        doc = f.metadata.get("doc")
        assert isinstance(doc, str), f"{name}.{f.name} has no doc"
        assert doc.strip()
        assert "\n" not in doc
        assert set(f.metadata) <= {"min", "max", "doc"}
        for bound in ("min", "max"):
            if bound in f.metadata:
                assert isinstance(f.metadata[bound], int | float)
        assert f.default_factory is dataclasses.MISSING


def test_threshold_entry_builds_a_working_detector() -> None:
    entry = DETECTOR_TYPES["threshold"]
    assert entry.params is ThresholdParams
    detector = entry.build(ThresholdParams(above=1.0))
    assert isinstance(detector, ThresholdDetector)
    assert isinstance(detector, Detector)
    assert detector.observe(0.0, 0.5) is None
    fired = detector.observe(1.0, 2.0)
    assert isinstance(fired, Detection)
    assert fired.kind == "threshold"


def test_declared_bounds_are_enforced_on_direct_construction() -> None:
    # The loader checks "min"/"max" from the metadata; building in Python must agree.
    for f in dataclasses.fields(ThresholdParams):
        if "min" not in f.metadata:
            continue
        with pytest.raises(ValueError, match=f.name):
            ThresholdParams(above=1.0, **{f.name: f.metadata["min"] - 1})
        ThresholdParams(above=1.0, **{f.name: f.metadata["min"]})
