"""Matchmaking: which waiting task queues a pilot should take jobs from, and why a job waits.

Pure and I/O-free: the database glue loads the waiting task queues into a
:class:`TaskQueueIndex`, keeps it current as jobs arrive and are taken, asks it for the best task
queues when a pilot requests work, and then takes jobs from those queues in the database.

Task queues
    Waiting jobs with the same owner group, Requirements, Rank and resource needs share one task
    queue (DIRAC's TaskQueueDB), so a match evaluates Requirements once per queue, not once per
    job. :func:`task_queue_key` is the key submission stores (submission's own function, so
    there is one definition); it takes times as given. :func:`time_segment` rounds a time up
    to DIRAC's CPU-time segments, for key material that should let jobs asking 50 and 55
    minutes share a queue.

Matching one pilot
    1. Cheap pre-filters, no ClassAd evaluated: the queue has waiting jobs, its cores fit the
       pilot's free cores (a whole-node job only an idle pilot), its memory the free memory, its
       wall time the pilot's time left.
    2. The job's Requirements (``MY`` = the queue's representative job ad, ``TARGET`` = the pilot
       ad). Each Requirements is split into its ``&&`` clauses once. A clause that reads only
       the pilot (``other.X``) has one value per request, so it is shared by every queue that
       contains it; one that reads the job ad too (``CpuNumber``) is shared by the queues whose
       job ads are equal. One request evaluates each shared clause at most once. Queues of real
       VOs repeat the same few clauses (``other.GlueCEStateStatus == "Production"``, the
       software tags, the OS), so a request with 1,000 queues costs a few hundred clause
       evaluations, not 1,000 Requirements. ``&&`` is true exactly when every clause is, so
       the result is the one the whole Requirements gives.
    3. The pilot's own Requirements, if it has any (e.g. only one VO), against the job ad: the
       match is symmetric. A pilot without Requirements accepts every job.

The choice rule
    Among the matching queues, for each job to hand out:

    1. **Rank**: the job's Rank of this pilot, highest first. Only the queues of the best rank
       that still fit the pilot's remaining resources compete (a Rank is the job's preference
       for this resource, which is what a pull matcher can honour). With gLite's default Rank
       (``-other.GlueCEStateEstimatedResponseTime``, 0 on every pilot) all queues tie here;
       a group whose jobs carry a higher constant Rank does go first, as the issue orders.
    2. **Fair share** between groups (VOs): each group has a configured weight (default 1); the
       group with the lowest ``(running jobs + jobs handed out earlier in this request) /
       weight`` goes first, ties by group name. Every job handed out raises its group's usage,
       so the next job of the same request already sees the new balance.
    3. **Priority**, highest first, then **age** (oldest submission first), then queue id:
       within the chosen group.

    Why this rule. Usage over weight is deterministic (no random draw, unlike DIRAC's
    ``RAND() / priority``), so the tests can state exact sequences, and it converges: with
    every group always waiting, the running counts approach the ratio of the weights. It is
    starvation-free among queues of equal rank: a waiting group's usage does not grow while
    it is passed over, every other pick raises someone else's, so after finitely many picks it
    has the lowest ratio. Priority orders queues within a group only (as DIRAC's user
    priority scales shares inside a group), because a priority compared across groups would let
    one group starve the others by raising its own. Age last keeps each group first-in
    first-out. A deficit round robin would converge as well but needs per-group state carried
    between requests and is harder to reason about when running counts also fall as jobs end.

    A pilot with several free cores is filled in one request: :meth:`TaskQueueIndex.match`
    repeats the rule with the resources left after each pick and returns one queue id per job
    (eight 1-core jobs from one or several queues, or one 8-core job).

List-match
    :func:`explain_match` reports, clause by clause, why a job or a task queue does or does not
    match a pilot or queue ad: the pre-filters, the job's Requirements clauses and the pilot's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from pilotwms.classad import (
    ERROR,
    ClassAd,
    ClassAdSyntaxError,
    conjuncts,
    explain,
    matches,
    parse_ad,
    parse_expr,
    rank,
    unparse,
)

#: Upper bounds of the time segments (seconds) a requested time is rounded up to, as DIRAC's
#: TaskQueueDB does for CPU time: 6 min, 30 min, 1 h, 6 h, 12 h, 1 d, 2 d, 3 d, 4 d, 6 d, 8 d,
#: 10 d, 12.5 d. Longer requests keep their own value.
TIME_SEGMENTS_S: Final[tuple[int, ...]] = (
    360,
    1_800,
    3_600,
    21_600,
    43_200,
    86_400,
    172_800,
    259_200,
    345_600,
    518_400,
    691_200,
    864_000,
    1_080_000,
)

# A clause or an attribute that names Requirements or Rank may depend on the whole job ad, so
# it is never shared between queues.
_SELF_REFERENCE = re.compile(r"\b(requirements|rank)\b", re.IGNORECASE)
_UNSET: Final = object()

# The tokens of an unparsed expression, enough to tell which names it reads: strings, quoted
# names, numbers, names, and any other single character.
_TOKEN = re.compile(
    r"""\s*(?:("(?:[^"\\]|\\.)*")|('(?:[^'\\]|\\.)*')|((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |([A-Za-z_][A-Za-z0-9_]*)|(\S))""",
    re.DOTALL | re.VERBOSE,
)
_LITERAL_NAMES = frozenset({"true", "false", "undefined", "error", "is", "isnt"})


def _reads_my(text: str) -> bool:
    """Whether the expression ``text`` (as :func:`unparse` writes it) may read its own ad.

    Conservative: only names reached as ``other.X``/``target.X`` (and selections on them),
    function names and literals are known not to; anything else, ``eval(...)`` included, counts
    as reading the own ad. A clause that does not read it (nor the pilot's Requirements or Rank,
    which read back) has one value per pilot, whichever queue's job ad it is evaluated with, so
    every queue can share it.
    """
    return _reads_names(text, allow_other=True)


def _reads_names(text: str, *, allow_other: bool) -> bool:
    """Whether ``text`` reads any attribute (``allow_other``: any but ``other.X``)."""
    prev = prev2 = ""
    for m in _TOKEN.finditer(text):
        string, _qname, number, name, char = m.groups()
        if string is not None or number is not None:
            tok = "literal"
        elif char is not None:
            tok = char
        else:
            tok = "name"
            after = text[m.end() :].lstrip()[:1]
            lower = name.lower() if name is not None else None
            if prev == "." and prev2 in ("name", ")", "]", "}"):
                pass  # a selection on something else: other.X, other.X.Y, f(x).Y
            elif lower is not None and after == "(":
                if lower == "eval":
                    return True
            elif lower in _LITERAL_NAMES:
                pass
            elif not (allow_other and lower in ("other", "target") and after == "."):
                return True
        prev2, prev = prev, tok
    return False


def time_segment(seconds: int | None) -> int | None:
    """``seconds`` rounded up to the next of :data:`TIME_SEGMENTS_S` (``None`` stays ``None``).

    Meant for the task-queue key material, so that jobs asking 50 and 55 minutes share a queue;
    the queue then advertises the segment, a conservative bound for the time pre-filter.
    """
    if seconds is None:
        return None
    for bound in TIME_SEGMENTS_S:
        if seconds <= bound:
            return bound
    return seconds


def task_queue_key(
    owner_group: str,
    requirements: str,
    rank: str,
    *,
    cpus: int = 1,
    whole_node: bool = False,
    memory_mb: int | None = None,
    wall_time_s: int | None = None,
    cpu_time_s: int | None = None,
) -> str:
    """The stable hex key of the task queue a job with these properties belongs to.

    This is submission's key (``pilotwms.server.logic.submission``), called rather than copied
    so the two can never disagree: sha256 over the group, the Requirements and Rank texts as
    stored, and the resource request as given (no time bucketing).
    """
    # Imported here: this module stays free of the database layer that submission needs.
    from pilotwms.server.logic import submission

    derived = submission._Derived(
        requirements=requirements,
        rank=rank,
        cpus=cpus,
        whole_node=whole_node,
        memory_mb=memory_mb,
        wall_time_s=wall_time_s,
        cpu_time_s=cpu_time_s,
        retry_count=0,
        shallow_retry_count=0,
        expiry=None,
        sandbox=[],
    )
    return submission._task_queue_key(owner_group, derived)


@dataclass(frozen=True)
class TaskQueue:
    """One task queue as the matcher sees it.

    ``job_ad`` is ClassAd text (``a = 1; b = "x"``) with the JDL attributes the jobs' Requirements
    and Rank may read as ``MY`` beyond those derived from the other fields; see
    :meth:`template_ad`. ``oldest_submitted`` is the epoch time of the oldest waiting job.
    """

    id: int
    owner_group: str
    requirements: str
    rank: str = ""
    cpus: int = 1
    memory_mb: int | None = None
    wall_time_s: int | None = None
    priority: int = 0
    oldest_submitted: float = 0.0
    waiting: int = 0
    whole_node: bool = False
    cpu_time_s: int | None = None
    job_ad: str = ""

    def template_ad(self) -> ClassAd:
        """The representative job ad: ``job_ad`` plus ``Requirements``, ``Rank``, ``CpuNumber``,
        ``WholeNodes``, ``Memory`` (MB), ``MaxWallTime`` and ``MaxCPUTime`` (s), ``OwnerGroup``,
        and ``VirtualOrganisation``/``VO`` (the group, unless ``job_ad`` names the VO).

        An empty Requirements text is ``true``. Raises ``ClassAdSyntaxError`` on bad text.
        """
        ad = parse_ad(self.job_ad) if self.job_ad.strip() else ClassAd()
        ad["Requirements"] = parse_expr(self.requirements) if self.requirements.strip() else True
        if self.rank.strip():
            ad["Rank"] = parse_expr(self.rank)
        derived: dict[str, Any] = {
            "CpuNumber": self.cpus,
            "WholeNodes": self.whole_node,
            "Memory": self.memory_mb,
            "MaxWallTime": self.wall_time_s,
            "MaxCPUTime": self.cpu_time_s,
            "OwnerGroup": self.owner_group,
        }
        vo = self.owner_group
        if "VirtualOrganisation" in ad:
            value = ad.evaluate("VirtualOrganisation")
            vo = value if isinstance(value, str) else vo
        derived["VirtualOrganisation"] = vo
        derived["VO"] = vo
        for name, value in derived.items():
            if value is not None and name not in ad:
                ad[name] = value
        return ad


@dataclass(frozen=True)
class SlotOffer:
    """What a pilot has free now: cores, memory (MB, ``None``: not limited), time left (s,
    ``None``: unbounded), and whether it runs nothing (only then may it take a whole node)."""

    free_cores: int
    free_memory_mb: int | None = None
    time_left_s: float | None = None
    idle: bool = False

    @classmethod
    def from_ad(cls, ad: ClassAd) -> SlotOffer:
        """The offer a slot ad describes (``FreeCpus``/``Cpus``, ``FreeMemory``/``Memory``,
        ``TimeLeft`` with -1 for unbounded, ``RunningJobs``): for list-match against
        registered pilots and configured queues."""

        def number(*names: str) -> float | None:
            for name in names:
                value = ad.evaluate(name) if name in ad else None
                if type(value) is int or type(value) is float:
                    return float(value)
            return None

        cores = number("FreeCpus", "Cpus")
        memory = number("FreeMemory", "Memory")
        left = number("TimeLeft")
        running = number("RunningJobs")
        return cls(
            free_cores=int(cores) if cores is not None else 1,
            free_memory_mb=int(memory) if memory is not None else None,
            time_left_s=left if left is not None and left >= 0 else None,
            idle=not running,
        )


@dataclass(frozen=True)
class ClauseResult:
    """One line of list-match: a clause, its value, whether it holds, and whose it is
    (``"resources"`` for the pre-filters, ``"job"`` or ``"pilot"`` for Requirements)."""

    clause_text: str
    value: Any
    ok: bool
    side: str = "job"


@dataclass(frozen=True)
class FairShare:
    """Fair-share weights per owner group; groups not listed get ``default_weight``."""

    weights: Mapping[str, float] = field(default_factory=dict)
    default_weight: float = 1.0

    def __post_init__(self) -> None:
        for group, weight in {**self.weights, "<default>": self.default_weight}.items():
            if not (weight > 0 and math.isfinite(weight)):
                raise ValueError(f"fair-share weight of {group!r} must be positive, not {weight}")

    def weight(self, group: str) -> float:
        return self.weights.get(group, self.default_weight)


def _holds(value: Any, multi: bool) -> bool:
    """Whether one clause lets the whole Requirements be true: ``&&`` takes a non-zero number
    as true, but a Requirements that is a single number is no match (only ``true`` is)."""
    if value is True:
        return True
    t = type(value)
    return multi and (t is int or t is float) and value != 0


def _fits(tq: TaskQueue, cores: int, memory: int | None, left: float | None, idle: bool) -> bool:
    if tq.whole_node:
        if not idle:
            return False
    elif tq.cpus > cores:
        return False
    if memory is not None and tq.memory_mb is not None and tq.memory_mb > memory:
        return False
    return not (left is not None and tq.wall_time_s is not None and tq.wall_time_s > left)


class _Interner:
    """Reference-counted ids for shared things (clauses, job-ad signatures), reusing freed ids
    so per-request tables stay as small as the live set."""

    __slots__ = ("_free", "_ids", "_keys", "objects", "refs")

    def __init__(self) -> None:
        self._ids: dict[Any, int] = {}
        self._keys: list[Any] = []
        self._free: list[int] = []
        self.objects: list[Any] = []
        self.refs: list[int] = []

    def acquire(self, key: Any, obj: Any) -> int:
        i = self._ids.get(key)
        if i is not None:
            self.refs[i] += 1
            return i
        if self._free:
            i = self._free.pop()
            self._keys[i], self.objects[i], self.refs[i] = key, obj, 1
        else:
            i = len(self.objects)
            self._keys.append(key)
            self.objects.append(obj)
            self.refs.append(1)
        self._ids[key] = i
        return i

    def release(self, i: int) -> None:
        self.refs[i] -= 1
        if self.refs[i] == 0:
            del self._ids[self._keys[i]]
            self._keys[i] = self.objects[i] = None
            self._free.append(i)

    def __len__(self) -> int:
        return len(self.objects)


class _Entry:
    """A task queue with everything compiled once: its job ad, clause ids and sharing keys."""

    __slots__ = ("ad", "clauses", "multi", "rank_id", "sig_id", "tq", "waiting")

    def __init__(self, tq: TaskQueue) -> None:
        self.tq = tq
        self.waiting = tq.waiting
        self.ad: ClassAd | None = None
        self.clauses: list[int] = []
        self.multi = False
        self.sig_id = -1
        self.rank_id = -1


class TaskQueueIndex:
    """The waiting task queues in memory, answering "which queues for this pilot" fast.

    Not thread-safe: the caller serialises access (one asyncio loop, or a lock). ``match`` and
    ``matching`` only read; ``add``, ``take``, ``release`` and friends change the index.
    """

    def __init__(self, fair_share: FairShare | None = None) -> None:
        self.fair_share = fair_share or FairShare()
        self._entries: dict[int, _Entry] = {}
        self._order: list[_Entry] | None = None
        self._sorted_size = 0  # number of queues when every clause list was last sorted
        self._clauses = _Interner()  # (clause text[, signature or queue]) -> (Expr, job ad)
        self._sigs = _Interner()  # job ad without Requirements/Rank -> shareable flag
        self._ranks = _Interner()  # (rank text, signature id) -> (job ad)
        self._running: dict[str, int] = {}
        self._constant: dict[int, tuple[Any, bool]] = {}

    # --- keeping the index current ------------------------------------------------------

    def add(self, tq: TaskQueue) -> None:
        """Insert a task queue, or replace the one with the same id (its text may change).

        A queue whose texts do not parse is kept but never matches; :meth:`explain` says why.
        """
        if tq.id in self._entries:
            self.remove(tq.id)
        entry = _Entry(tq)
        try:
            entry.ad = tq.template_ad()
        except (ClassAdSyntaxError, ValueError, TypeError):
            entry.ad = None  # never matches; explain_match reports the syntax error
        if entry.ad is not None:
            self._compile(entry, entry.ad)
            refs = self._clauses.refs
            entry.clauses.sort(key=lambda cid: -refs[cid])
        self._entries[tq.id] = entry
        if self._order is not None:
            self._order.append(entry)

    def _compile(self, entry: _Entry, ad: ClassAd) -> None:
        rest = ad.copy()
        del rest["Requirements"]
        if "Rank" in rest:
            del rest["Rank"]
        sig_text = unparse(rest)
        shareable = not _SELF_REFERENCE.search(sig_text)
        sig_key = sig_text if shareable else ("tq", entry.tq.id)
        entry.sig_id = self._sigs.acquire(sig_key, shareable)
        parts = conjuncts(ad["Requirements"])
        entry.multi = len(parts) > 1
        for clause in parts:
            text = unparse(clause)
            key: tuple[Any, ...]
            if _SELF_REFERENCE.search(text):
                key = (text, "tq", entry.tq.id)
            elif not _reads_my(text):
                key = (text,)
            elif shareable:
                key = (text, entry.sig_id)
            else:
                key = (text, "tq", entry.tq.id)
            entry.clauses.append(self._clauses.acquire(key, (clause, ad)))
        rank_key: tuple[Any, ...] = (entry.tq.rank.strip(), entry.sig_id)
        if _SELF_REFERENCE.search(entry.tq.rank) or not shareable:
            rank_key = ("tq", entry.tq.id)
        entry.rank_id = self._ranks.acquire(rank_key, ad)

    def remove(self, tq_id: int) -> None:
        """Forget a task queue (it has no waiting job left, or was deleted). Unknown ids are
        ignored."""
        entry = self._entries.pop(tq_id, None)
        if entry is None:
            return
        for cid in entry.clauses:
            self._clauses.release(cid)
        if entry.sig_id >= 0:
            self._sigs.release(entry.sig_id)
            self._ranks.release(entry.rank_id)
        self._order = None

    def set_waiting(self, tq_id: int, waiting: int) -> None:
        """The number of waiting jobs of a queue changed (jobs submitted or requeued)."""
        self._entries[tq_id].waiting = waiting

    def take(self, tq_id: int, n: int = 1) -> None:
        """``n`` jobs of the queue were handed out: fewer wait, its group runs more."""
        entry = self._entries[tq_id]
        entry.waiting = max(0, entry.waiting - n)
        group = entry.tq.owner_group
        self._running[group] = self._running.get(group, 0) + n

    def release(self, group: str, n: int = 1) -> None:
        """``n`` running jobs of ``group`` ended (or were requeued)."""
        self._running[group] = max(0, self._running.get(group, 0) - n)

    def set_running(self, counts: Mapping[str, int]) -> None:
        """Replace the running-job counts per group (at start-up, or resynchronised)."""
        self._running = {g: n for g, n in counts.items() if n > 0}

    def running(self, group: str) -> int:
        return self._running.get(group, 0)

    def get(self, tq_id: int) -> TaskQueue:
        """The queue as added, with its current number of waiting jobs."""
        entry = self._entries[tq_id]
        if entry.waiting == entry.tq.waiting:
            return entry.tq
        return replace(entry.tq, waiting=entry.waiting)

    def waiting(self, tq_id: int) -> int:
        """The queue's current number of waiting jobs (:meth:`get` without the copy)."""
        return self._entries[tq_id].waiting

    def queues(self) -> list[TaskQueue]:
        """Every queue in the index, with its current number of waiting jobs (the demand the
        pilot factory reads)."""
        return [self.get(tq_id) for tq_id in self._entries]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, tq_id: object) -> bool:
        return tq_id in self._entries

    # --- matching -----------------------------------------------------------------------

    def _ordered(self) -> list[_Entry]:
        """The entries, each with its clauses ordered most-shared first: a shared clause is
        likely evaluated already in this request, so a queue is rejected by a cached value
        first. A new queue is sorted when added; all are sorted again each time the index has
        doubled since the last time (sharing counts change as queues arrive), which keeps the
        cost amortised when queues come and go between requests."""
        order = self._order
        if order is None:
            order = self._order = list(self._entries.values())
        if len(order) > 2 * self._sorted_size:
            refs = self._clauses.refs
            for entry in order:
                entry.clauses.sort(key=lambda cid: -refs[cid])
            self._sorted_size = len(order)
        return order

    def _plain(self, pilot: ClassAd) -> bool:
        """Whether every attribute of the pilot ad but its Requirements and Rank is a constant.

        Slot ads from the agent always are; then a clause reading only ``other.X`` has one
        value per request. A pilot attribute that computes from its counterpart would make such
        a clause depend on the job ad, so :meth:`_candidates` then evaluates every queue whole.
        """
        cache = self._constant
        if len(cache) > 50_000:
            cache.clear()
        for name in pilot:
            if name.lower() in ("requirements", "rank"):
                continue
            e = pilot[name]
            hit = cache.get(id(e))
            if hit is None or hit[0] is not e:
                # The expression is kept in the entry so that its id cannot be reused.
                hit = cache[id(e)] = (e, not _reads_names(unparse(e), allow_other=False))
            if not hit[1]:
                return False
        return True

    def _candidates(self, pilot: ClassAd, offer: SlotOffer) -> tuple[list[_Entry], bool]:
        """Every queue with waiting jobs that fits the offer and matches both ways, and
        whether the pilot ad is plain (see :meth:`_plain`)."""
        cores, memory, left, idle = (
            offer.free_cores,
            offer.free_memory_mb,
            offer.time_left_s,
            offer.idle,
        )
        plain = self._plain(pilot)
        values: list[Any] = [_UNSET] * len(self._clauses)
        clause_objects = self._clauses.objects
        pilot_req = pilot.get("Requirements")
        pilot_memo: dict[Any, bool] = {}
        pilot_shared = (
            plain and pilot_req is not None and not _SELF_REFERENCE.search(unparse(pilot_req))
        )
        out: list[_Entry] = []
        for entry in self._ordered():
            if entry.waiting <= 0 or entry.ad is None:
                continue
            tq = entry.tq
            if tq.whole_node:
                if not idle:
                    continue
            elif tq.cpus > cores:
                continue
            if memory is not None and tq.memory_mb is not None and tq.memory_mb > memory:
                continue
            if left is not None and tq.wall_time_s is not None and tq.wall_time_s > left:
                continue
            if plain:
                multi = entry.multi
                ok = True
                for cid in entry.clauses:
                    v = values[cid]
                    if v is _UNSET:
                        clause, ad = clause_objects[cid]
                        v = values[cid] = clause.evaluate(ad, pilot)
                    if v is not True and (v is False or not _holds(v, multi)):
                        ok = False
                        break
                if not ok:
                    continue
            elif not matches(entry.ad, pilot):
                continue
            if pilot_req is not None:
                key = entry.sig_id if pilot_shared else ("tq", tq.id)
                accepted = pilot_memo.get(key)
                if accepted is None:
                    accepted = pilot_memo[key] = matches(pilot, entry.ad)
                if not accepted:
                    continue
            out.append(entry)
        return out, plain

    def matching(self, pilot: ClassAd, offer: SlotOffer) -> list[int]:
        """Ids of every queue this pilot could take a job from now, ascending (what a pilot
        factory sums to size its next submission)."""
        return sorted(e.tq.id for e in self._candidates(pilot, offer)[0])

    def match(self, pilot: ClassAd, offer: SlotOffer, max_jobs: int = 1) -> list[int]:
        """Queue ids to take jobs from, one per job, best first, filling ``offer`` with at
        most ``max_jobs`` jobs (see the module docstring for the rule). Does not change the
        index: call :meth:`take` for the jobs actually handed out."""
        if max_jobs <= 0:
            return []
        candidates, plain = self._candidates(pilot, offer)
        if not candidates:
            return []
        # Rank once per distinct (Rank, job ad); then tiers of equal rank, best first, and
        # within a tier the queues of each group in (priority, age, id) order.
        rank_memo: dict[int, float] = {}
        tiers: dict[float, dict[str, list[_Entry]]] = {}
        for entry in candidates:
            r = rank_memo.get(entry.rank_id) if plain else None
            if r is None:
                ad = (
                    entry.ad
                    if not plain and entry.ad is not None
                    else self._ranks.objects[entry.rank_id]
                )
                r = rank_memo[entry.rank_id] = rank(ad, pilot)
            if math.isnan(r):  # a NaN rank sorts last, not anywhere
                r = -math.inf
            tiers.setdefault(r, {}).setdefault(entry.tq.owner_group, []).append(entry)
        ordered_tiers = [tiers[r] for r in sorted(tiers, reverse=True)]
        for groups in ordered_tiers:
            for queues in groups.values():
                queues.sort(key=lambda e: (-e.tq.priority, e.tq.oldest_submitted, e.tq.id))

        cores, memory, left, idle = (
            offer.free_cores,
            offer.free_memory_mb,
            offer.time_left_s,
            offer.idle,
        )
        handed: dict[str, int] = {}
        left_in: dict[int, int] = {}
        picks: list[int] = []
        weight = self.fair_share.weight
        while len(picks) < max_jobs:
            chosen: _Entry | None = None
            for groups in ordered_tiers:
                best_usage = math.inf
                best_group = ""
                for group, queues in groups.items():
                    usage = (self._running.get(group, 0) + handed.get(group, 0)) / weight(group)
                    if usage > best_usage or (usage == best_usage and group > best_group):
                        continue
                    for e in queues:
                        if left_in.get(e.tq.id, e.waiting) > 0 and _fits(
                            e.tq, cores, memory, left, idle
                        ):
                            chosen, best_usage, best_group = e, usage, group
                            break
                if chosen is not None:
                    break
            if chosen is None:
                break
            tq = chosen.tq
            picks.append(tq.id)
            left_in[tq.id] = left_in.get(tq.id, chosen.waiting) - 1
            handed[tq.owner_group] = handed.get(tq.owner_group, 0) + 1
            if tq.whole_node:
                cores = 0
            else:
                cores -= tq.cpus
            if memory is not None and tq.memory_mb is not None:
                memory -= tq.memory_mb
            idle = False
        return picks

    def explain(
        self, tq_id: int, resource: ClassAd, offer: SlotOffer | None = None
    ) -> list[ClauseResult]:
        """:func:`explain_match` for a queue of the index."""
        return explain_match(self.get(tq_id), resource, offer)


def _resource_clauses(tq: TaskQueue, offer: SlotOffer) -> list[ClauseResult]:
    out: list[ClauseResult] = []
    if tq.whole_node:
        ok = offer.idle
        text = "needs a whole node, slot is " + ("idle" if ok else "running jobs")
        out.append(ClauseResult(text, ok, ok, "resources"))
    else:
        ok = tq.cpus <= offer.free_cores
        text = f"needs {tq.cpus} core{'s' * (tq.cpus != 1)}, slot has {offer.free_cores} free"
        out.append(ClauseResult(text, ok, ok, "resources"))
    if tq.memory_mb is not None:
        if offer.free_memory_mb is None:
            text, ok = f"needs {tq.memory_mb} MB memory, slot memory is not limited", True
        else:
            ok = tq.memory_mb <= offer.free_memory_mb
            text = f"needs {tq.memory_mb} MB memory, slot has {offer.free_memory_mb} MB free"
        out.append(ClauseResult(text, ok, ok, "resources"))
    if tq.wall_time_s is not None:
        if offer.time_left_s is None:
            text, ok = f"needs {tq.wall_time_s} s wall time, slot time is unbounded", True
        else:
            ok = tq.wall_time_s <= offer.time_left_s
            text = f"needs {tq.wall_time_s} s wall time, slot has {offer.time_left_s:g} s left"
        out.append(ClauseResult(text, ok, ok, "resources"))
    return out


def explain_match(
    job: TaskQueue | ClassAd, resource: ClassAd, offer: SlotOffer | None = None
) -> list[ClauseResult]:
    """Why ``job`` (a task queue, or a job ad) does or does not match ``resource`` (a pilot or
    queue ad): list-match's "why is my job waiting", one :class:`ClauseResult` per check.

    For a task queue the resource pre-filters come first (against ``offer``, by default the
    one ``resource`` describes, see :meth:`SlotOffer.from_ad`), then each clause of the job's
    Requirements, then each clause of the resource's own Requirements (if any). The job matches
    when every result is ``ok``.
    """
    out: list[ClauseResult] = []
    if isinstance(job, TaskQueue):
        out.extend(_resource_clauses(job, offer or SlotOffer.from_ad(resource)))
        try:
            job_ad = job.template_ad()
        except (ClassAdSyntaxError, ValueError, TypeError) as exc:
            out.append(ClauseResult(f"Requirements do not parse: {exc}", ERROR, False))
            return out
    else:
        job_ad = job
    if "Requirements" not in job_ad:
        out.append(ClauseResult("the job has no Requirements", False, False))
    else:
        clauses = explain(job_ad, resource)
        multi = len(clauses) > 1
        out.extend(ClauseResult(unparse(c), v, _holds(v, multi)) for c, v in clauses)
    if "Requirements" in resource:
        clauses = explain(resource, job_ad)
        multi = len(clauses) > 1
        out.extend(ClauseResult(unparse(c), v, _holds(v, multi), "pilot") for c, v in clauses)
    return out


def failed_clauses(results: Iterable[ClauseResult]) -> list[ClauseResult]:
    """The results that keep a job from matching (empty: it matches)."""
    return [r for r in results if not r.ok]


__all__ = [
    "TIME_SEGMENTS_S",
    "ClauseResult",
    "FairShare",
    "SlotOffer",
    "TaskQueue",
    "TaskQueueIndex",
    "explain_match",
    "failed_clauses",
    "task_queue_key",
    "time_segment",
]
