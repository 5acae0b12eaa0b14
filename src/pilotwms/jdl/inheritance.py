"""What the nodes of a collection or DAG take from their parent.

gLite's rules (``ExpDagAd::getSubmissionStrings`` and ``ExpDagAd::inherit`` in jdl-api-cpp, as
WMProxy applies them on the server side), in this order:

1. ``NodeName`` is the node's name unless the node sets one.
2. ``Rank`` and ``Requirements`` of the parent go to nodes that have none.
3. ``RetryCount``/``ShallowRetryCount``: a node without one takes the value written in the DAG's
   ``nodes`` record, else ``DefaultNodeRetryCount``/``DefaultNodeShallowRetryCount``.
4. ``VirtualOrganisation`` of the parent is forced on every node.
5. Copied to nodes that lack them: FuzzyRank, InputSandbox, OutputSandbox,
   OutputSandboxDestURI, OutputSandboxBaseDestURI, CertificateSubject, RetryCount,
   ShallowRetryCount, PerusalFileEnable, SubmitTo, InputSandboxBaseURI, VOMS_FQAN,
   ShortDeadlineJob, ExpiryTime.
6. Forced (the parent's value replaces the node's): HLRLocation, MyProxyServer, JobProvenance.

Nodes may also refer to the parent's sandbox as ``root.InputSandbox[i]`` or ``root.InputSandbox``
(files shared by nodes are then transferred once); :func:`resolve_root_sandbox` replaces these
references by the parent's entries so that every node carries plain strings.
"""

from __future__ import annotations

import re

from pilotwms.classad import ClassAd, parse_expr, unparse
from pilotwms.jdl.errors import JDLExpansionError
from pilotwms.jdl.values import position, quote, string_list

INHERITED_IF_ABSENT: tuple[str, ...] = (
    "FuzzyRank",
    "InputSandbox",
    "OutputSandbox",
    "OutputSandboxDestURI",
    "OutputSandboxBaseDestURI",
    "CertificateSubject",
    "RetryCount",
    "ShallowRetryCount",
    "PerusalFileEnable",
    "SubmitTo",
    "InputSandboxBaseURI",
    "VOMS_FQAN",
    "ShortDeadlineJob",
    "ExpiryTime",
)
FORCED: tuple[str, ...] = ("VirtualOrganisation", "HLRLocation", "MyProxyServer", "JobProvenance")
#: Every attribute a node may take from its parent, for documentation and the CLI.
INHERITED: tuple[str, ...] = ("Rank", "Requirements", *INHERITED_IF_ABSENT, *FORCED)

_ROOT_REF = re.compile(r"root\s*\.\s*inputsandbox(?:\s*\[\s*(\d+)\s*\])?", re.IGNORECASE)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _copy_attr(node: ClassAd, parent: ClassAd, name: str, *, force: bool = False) -> None:
    expr = parent.get(name)
    if expr is None:
        return
    if force or name not in node:
        node[name] = expr


def inherit(
    node: ClassAd,
    parent: ClassAd,
    *,
    name: str,
    nodes_record: ClassAd | None = None,
) -> ClassAd:
    """A copy of ``node`` with what it inherits from ``parent`` (see the module docstring)."""
    result = node.copy()
    if "NodeName" not in result:
        result["NodeName"] = name
    for attr in ("Rank", "Requirements"):
        _copy_attr(result, parent, attr)
    for attr, default_attr in (
        ("RetryCount", "DefaultNodeRetryCount"),
        ("ShallowRetryCount", "DefaultNodeShallowRetryCount"),
    ):
        if attr in result:
            continue
        if nodes_record is not None and attr in nodes_record:
            _copy_attr(result, nodes_record, attr)
        elif default_attr in parent:
            expr = parent.get(default_attr)
            if expr is not None:
                result[attr] = expr
    for attr in INHERITED_IF_ABSENT:
        _copy_attr(result, parent, attr)
    for attr in FORCED:
        _copy_attr(result, parent, attr, force=True)
    return result


def _outside_strings(text: str) -> list[tuple[bool, str]]:
    """Split ClassAd text into (is_string_literal, chunk) pieces."""
    pieces: list[tuple[bool, str]] = []
    pos = 0
    for m in _STRING.finditer(text):
        if m.start() > pos:
            pieces.append((False, text[pos : m.start()]))
        pieces.append((True, m.group(0)))
        pos = m.end()
    if pos < len(text):
        pieces.append((False, text[pos:]))
    return pieces


def _flatten(value: object) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            sub = _flatten(item)
            if sub is None:
                return None
            out.extend(sub)
        return out
    return None


def resolve_root_sandbox(node: ClassAd, parent: ClassAd, *, node_name: str) -> None:
    """Replace ``root.InputSandbox[i]`` / ``root.InputSandbox`` in ``node``'s InputSandbox.

    Modifies ``node`` in place. Raises :class:`JDLExpansionError` when an index is out of the
    parent's InputSandbox.
    """
    expr = node.get("InputSandbox")
    if expr is None:
        return
    text = unparse(expr)
    if "root" not in text.lower():
        return
    shared = string_list(parent, "InputSandbox")
    line, column = position(node, "InputSandbox")

    def replace(m: re.Match[str]) -> str:
        index = m.group(1)
        if index is None:
            return "{" + ", ".join(quote(s) for s in shared) + "}"
        i = int(index)
        if i >= len(shared):
            raise JDLExpansionError(
                f"node {node_name}: InputSandbox refers to root.InputSandbox[{i}] but the "
                f"parent's InputSandbox has {len(shared)} entr{'y' if len(shared) == 1 else 'ies'}",
                node=node_name,
                line=line,
                column=column,
            )
        return quote(shared[i])

    rewritten = "".join(
        chunk if is_string else _ROOT_REF.sub(replace, chunk)
        for is_string, chunk in _outside_strings(text)
    )
    files = _flatten(parse_expr(rewritten).evaluate(node))
    if files is None:
        raise JDLExpansionError(
            f"node {node_name}: InputSandbox must be strings or root.InputSandbox references",
            node=node_name,
            line=line,
            column=column,
        )
    node["InputSandbox"] = files


def has_root_reference(ad: ClassAd) -> bool:
    """Whether ``ad``'s InputSandbox refers to ``root.`` (cheap pre-check)."""
    expr = ad.get("InputSandbox")
    return expr is not None and "root" in unparse(expr).lower()


__all__ = ["FORCED", "INHERITED", "INHERITED_IF_ABSENT", "inherit", "resolve_root_sandbox"]
