"""The real JDL corpus parses as ClassAds; the two known-broken files fail where they break."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotwms.classad import ClassAdSyntaxError, parse_ad, unparse

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "jdl-corpus"
BROKEN = {
    # missing ";" after Requirements: the parser stops at the next attribute name
    "049-mpistart-integration-member.jdl": (10, 1, "Rank"),
    # DIRAC template with %(InputData)s placeholders
    "074-dirac-testWF-parametric.jdl": (4, 17, "%"),
    # the WMS user guide's DAG declares nodeB twice (classad2 keeps the last one silently)
    "076-doc-wmsug-dag.jdl": (12, 6, "nodeB"),
}
FILES = sorted(CORPUS.glob("*.jdl")) if CORPUS.is_dir() else []


def test_corpus_has_eighty_files() -> None:
    assert len(FILES) == 80, f"the JDL corpus is expected at {CORPUS} (shared/ beside the clone)"


@pytest.mark.parametrize("path", [p for p in FILES if p.name not in BROKEN], ids=lambda p: p.name)
def test_accepted_jdl_parses_and_round_trips(path: Path) -> None:
    ad = parse_ad(path.read_text())
    assert len(ad) > 0
    assert parse_ad(unparse(ad)) == ad
    assert parse_ad(unparse(ad, pretty=True)) == ad


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_jdl_is_rejected_at_the_fault(name: str) -> None:
    line, column, found = BROKEN[name]
    with pytest.raises(ClassAdSyntaxError) as info:
        parse_ad((CORPUS / name).read_text())
    err = info.value
    assert (err.line, err.column) == (line, column)
    assert found in err.message
    assert err.source_line[column - 1 :].startswith(found)
