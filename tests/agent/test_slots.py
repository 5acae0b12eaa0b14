"""Slot bookkeeping as tables: reservations are decisions, never side effects on processes."""

from __future__ import annotations

from typing import Any

import pytest

from pilotwms.agent.slots import Free, SlotBook

# (cores, memory, max_jobs, held [(cores, mem, whole)], request (cores, mem, whole),
#  granted, (cores, mem) held by the new claim or reason fragment)
CASES: list[tuple[Any, ...]] = [
    (4, 8000, 0, [], (1, 0, False), True, (1, 2000)),
    (4, 8000, 0, [], (2, 3000, False), True, (2, 3000)),
    (4, 8000, 0, [], (0, 0, True), True, (4, 8000)),
    (4, 8000, 0, [(1, 0, False)], (0, 0, True), False, "empty pilot"),
    (4, 8000, 0, [(3, 0, False)], (2, 0, False), False, "1 free"),
    (4, 8000, 0, [], (8, 0, False), False, "the slot has 4"),
    (4, 8000, 0, [(1, 7000, False)], (1, 2000, False), False, "1000 MiB free"),
    (4, 8000, 0, [], (1, 9000, False), False, "the slot has 8000"),
    (4, 8000, 1, [(1, 0, False)], (1, 0, False), False, "already running 1 jobs"),
    (4, 0, 0, [], (1, 50000, False), True, (1, 50000)),  # memory unknown: not enforced
    (2, 4000, 0, [(1, 0, False)], (1, 0, False), True, (1, 2000)),
]


@pytest.mark.parametrize(("cores", "memory", "max_jobs", "held", "ask", "granted", "expect"), CASES)
def test_reserve(
    cores: int,
    memory: int,
    max_jobs: int,
    held: list[tuple[int, int, bool]],
    ask: tuple[int, int, bool],
    granted: bool,
    expect: object,
) -> None:
    book = SlotBook(cores, memory, max_jobs)
    for n, (c, m, w) in enumerate(held):
        assert book.reserve(f"held{n}", c, m, w).granted
    decision = book.reserve("new", *ask)
    assert decision.granted is granted
    if granted:
        assert (decision.cores, decision.memory_mb) == expect
        assert "new" in book.claims
    else:
        assert str(expect) in decision.reason
        assert "new" not in book.claims


def test_free_and_release() -> None:
    book = SlotBook(4, 8000)
    assert book.free() == Free(cores=4, memory_mb=8000, jobs=4)
    book.reserve("a", 3, 1000)
    assert book.free() == Free(cores=1, memory_mb=7000, jobs=3)
    assert book.reserve("a", 1).reason == "already running on this pilot"
    assert book.release("a") is not None
    assert book.release("a") is None
    assert book.is_idle()


def test_job_cap_leaves_no_cores_to_advertise() -> None:
    book = SlotBook(8, 0, max_jobs=1)
    book.reserve("a", 1)
    assert book.free().cores == 0 and book.free().jobs == 0


def test_slot_needs_a_core() -> None:
    with pytest.raises(ValueError):
        SlotBook(0, 100)


def test_never_fits_names_what_the_empty_slot_lacks() -> None:
    book = SlotBook(2, 4000)
    book.reserve("a", 2)
    assert book.never_fits(2, 0, False) == ""  # waits for a slot, fits once "a" ends
    assert book.never_fits(3, 0, False) == "needs 3 cores, the slot has 2"
    assert book.never_fits(1, 5000, False) == "needs 5000 MiB, the slot has 4000"
    assert book.never_fits(1, 0, True) == ""
