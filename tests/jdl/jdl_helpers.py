"""Helpers shared by the JDL tests: the real JDL corpus beside the clone."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotwms.classad import ClassAd
from pilotwms.jdl import parse_jdl

#: ``shared/`` sits beside the clone, locally and on CI.
CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "jdl-corpus"


def corpus_dir() -> Path:
    """The corpus directory; a missing corpus fails the test (never skips it)."""
    if not CORPUS.is_dir():
        pytest.fail(
            f"JDL corpus not found at {CORPUS.resolve()}: the tests expect shared/jdl-corpus "
            "beside the repository (as on CI)"
        )
    return CORPUS.resolve()


def corpus_file(number: str) -> Path:
    """The corpus file whose name starts with ``number`` (e.g. ``"039"``)."""
    matches = sorted(corpus_dir().glob(f"{number}-*.jdl"))
    if len(matches) != 1:
        pytest.fail(f"expected one corpus file {number}-*.jdl, found {matches}")
    return matches[0]


def jdl(text: str) -> ClassAd:
    return parse_jdl(text, "<test>")
