"""gLite's default attributes and the Requirements clauses its library appends.

The gLite UI reads ``JdlDefaultAttributes`` from its configuration and its JDL library
(``JobAd::checkRankReq``, ``JobAd::checkJobType``) then rewrites the job:

- ``Requirements``: absent, it is the default; present, it becomes ``(user) && (default)``
  unless the two are the same expression.
- ``Rank``: the default only when the JDL has none. For a job with ``CpuNumber`` (or the old
  ``NodeNumber``) and no Rank, gLite's MPI rule ``Rank = other.GlueCEStateFreeCPUs`` is used
  instead: in gLite's code that rule runs after the default Rank was inserted and so never
  fires when the UI has a default; pilotwms applies it because it is the better choice for a
  multi-core job and is what the WMS documentation describes.
- ``CpuNumber = N`` appends ``other.GlueCEInfoTotalCPUs >= N``; ``SMPGranularity`` appends
  ``other.GlueHostArchitectureSMPSize >= SMPGranularity``; otherwise ``HostNumber`` with
  ``CpuNumber`` and no ``WholeNodes`` appends ``other.GlueHostArchitectureSMPSize >=
  ((CpuNumber % HostNumber > 0) ? (1 + CpuNumber / HostNumber) : (CpuNumber / HostNumber))``;
  ``JobType = "Interactive"`` appends ``other.GlueHostNetworkAdapterOutboundIP``.
- ``RetryCount``/``ShallowRetryCount`` (UI defaults, 3 each) are copied when missing; for a DAG
  or collection they become ``DefaultNodeRetryCount``/``DefaultNodeShallowRetryCount``, except
  when the DAG or collection sets ``RetryCount``/``ShallowRetryCount`` itself. gLite's UI fills
  them even then, and since DefaultNode* is applied to nodes before the parent's own value, the
  collection's RetryCount would never reach its nodes; pilotwms lets the user's value win.
- ``HLRLocation`` adds ``HLR_LOCATION=<value>`` to ``Environment``.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilotwms.classad import ClassAd, parse_expr, unparse
from pilotwms.jdl.values import bool_of, int_of, quote, string_list, string_of, value_of

DEFAULT_REQUIREMENTS = 'other.GlueCEStateStatus == "Production"'
DEFAULT_RANK = "-other.GlueCEStateEstimatedResponseTime"
MPI_RANK = "other.GlueCEStateFreeCPUs"
TOTAL_CPUS = "other.GlueCEInfoTotalCPUs"
SMP_SIZE = "other.GlueHostArchitectureSMPSize"
OUTBOUND_IP = "other.GlueHostNetworkAdapterOutboundIP"


@dataclass(frozen=True)
class Defaults:
    """The defaults a site configures (gLite's ``JdlDefaultAttributes``).

    ``None`` switches a default off: a JDL without Requirements (or Rank) then keeps none.
    """

    requirements: str | None = DEFAULT_REQUIREMENTS
    rank: str | None = DEFAULT_RANK
    retry_count: int | None = 3
    shallow_retry_count: int | None = 3


def request_type(ad: ClassAd) -> str:
    """``job``, ``dag`` or ``collection`` (``Type``, case-insensitive, default ``job``)."""
    value = string_of(ad, "Type")
    return value.lower() if value else "job"


def job_types(ad: ClassAd) -> list[str]:
    """The lower-cased values of ``JobType`` (default ``normal``)."""
    values = [v.lower() for v in string_list(ad, "JobType")]
    return values or ["normal"]


def _and(left: str, right: str) -> str:
    return f"({left}) && ({right})"


def _requirements(ad: ClassAd, defaults: Defaults) -> str | None:
    user = ad.get("Requirements")
    text = unparse(user) if user is not None else None
    if defaults.requirements is not None:
        default = unparse(parse_expr(defaults.requirements))
        if text is None:
            text = default
        elif text != default:
            text = _and(text, default)
    cpus = int_of(ad, "CpuNumber")
    if cpus is None:
        cpus = int_of(ad, "NodeNumber")
    clauses: list[str] = []
    if cpus is not None:
        clauses.append(f"{TOTAL_CPUS} >= {cpus}")
    whole = bool_of(ad, "WholeNodes")
    if "SMPGranularity" in ad:
        clauses.append(f"{SMP_SIZE} >= SMPGranularity")
    elif "HostNumber" in ad and "CpuNumber" in ad and not whole:
        clauses.append(
            f"{SMP_SIZE} >= ((CpuNumber % HostNumber > 0) ? "
            "(1 + CpuNumber / HostNumber) : (CpuNumber / HostNumber))"
        )
    if "interactive" in job_types(ad):
        clauses.append(OUTBOUND_IP)
    for clause in clauses:
        text = clause if text is None else f"({text}) && {clause}"
    return text


def add_environment(ad: ClassAd, entry: str) -> None:
    """Append ``entry`` (``NAME=value``) to ``Environment``, keeping a string as a list."""
    value = value_of(ad, "Environment")
    current = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if current is None:
        ad["Environment"] = [entry]
        return
    if entry in current:
        return
    expr = ad.get("Environment")
    if isinstance(value, list) and expr is not None:
        text = unparse(expr).strip()
        if text.startswith("{") and text.endswith("}"):
            inner = text[1:-1].strip()
            joined = f"{inner}, {quote(entry)}" if inner else quote(entry)
            ad["Environment"] = parse_expr("{" + joined + "}")
            return
    ad["Environment"] = [*current, entry]


def apply_defaults(ad: ClassAd, defaults: Defaults | None = None) -> ClassAd:
    """A copy of ``ad`` with gLite's defaults and appended clauses (module docstring).

    Applied to a DAG or collection it only fills ``DefaultNodeRetryCount`` and
    ``DefaultNodeShallowRetryCount``: the job rules are applied to each node by ``expand``.
    """
    defaults = defaults or Defaults()
    result = ad.copy()
    if request_type(ad) in ("dag", "collection"):
        for attr, own, value in (
            ("DefaultNodeRetryCount", "RetryCount", defaults.retry_count),
            ("DefaultNodeShallowRetryCount", "ShallowRetryCount", defaults.shallow_retry_count),
        ):
            if value is not None and attr not in result and own not in result:
                result[attr] = value
        return result
    requirements = _requirements(ad, defaults)
    if requirements is not None:
        result["Requirements"] = parse_expr(requirements)
    if "Rank" not in ad:
        if "CpuNumber" in ad or "NodeNumber" in ad:
            result["Rank"] = parse_expr(MPI_RANK)
        elif defaults.rank is not None:
            result["Rank"] = parse_expr(defaults.rank)
    for attr, value in (
        ("RetryCount", defaults.retry_count),
        ("ShallowRetryCount", defaults.shallow_retry_count),
    ):
        if value is not None and attr not in result:
            result[attr] = value
    hlr = string_of(ad, "HLRLocation")
    if hlr:
        add_environment(result, f"HLR_LOCATION={hlr}")
    return result


__all__ = ["DEFAULT_RANK", "DEFAULT_REQUIREMENTS", "Defaults", "apply_defaults"]
