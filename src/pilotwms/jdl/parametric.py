"""Parametric jobs, expanded as gLite's ``AdConverter::bulk2dag`` does.

1. ``"parametric"`` is removed from ``JobType``; ``Parameters``, ``ParameterStart`` (default 0)
   and ``ParameterStep`` (default 1, 0 rejected) are read and removed.
2. ``Parameters`` becomes a list of texts: an integer N gives ``"0"`` .. ``"N-1"``; a list gives
   its elements (integers as written, strings without their quotes, anything else, such as an
   unquoted word, as its ClassAd text; nested lists are flattened).
3. One node per index ``i = start; i < len(values); i += step``: the whole JDL text, with
   ``ParameterValue=_PARAM_`` added to ``Environment``, has every ``_PARAM_`` replaced by
   ``values[i]``. The substitution is textual, so it works in any attribute, in file names and
   in paths.
4. Node names are ``Node_<value>`` with gLite's sanitising (``.`` to ``_``, ``/`` to ``I``,
   ``*`` to ``-``, ``$`` to ``_S_``); two equal names are an error.

The template is unparsed once and each node's JDL is ``template.replace("_PARAM_", value)``:
no node is parsed here (``Node.ad`` parses on demand), which is what lets the server accept a
10,000-node parametric job in a fraction of a second. gLite also moves InputSandbox entries
shared by all nodes to the parent and makes nodes refer to them as ``root.InputSandbox[i]``,
a transfer optimisation that pilotwms's content-addressed sandbox store makes unnecessary: nodes
keep their own (substituted) InputSandbox.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, overload

from pilotwms.classad import ClassAd, unparse
from pilotwms.jdl.defaults import Defaults, add_environment, apply_defaults
from pilotwms.jdl.errors import JDLExpansionError
from pilotwms.jdl.nodes import Node
from pilotwms.jdl.values import int_of, list_items, position, string_list, value_of

PLACEHOLDER = "_PARAM_"
PARAMETER_VALUE = "ParameterValue"
#: Attributes that make no sense per node; gLite warns when they contain _PARAM_.
STATIC_ATTRIBUTES = (
    "VirtualOrganisation",
    "HLRLocation",
    "MyProxyServer",
    "LBAddress",
    "AllowZippedISB",
    "ZippedISB",
)
_REMOVED = ("Parameters", "ParameterStart", "ParameterStep")
#: Most nodes one parametric job may expand to (a server may set a lower limit of its own).
MAX_NODES = 100_000


def sanitise_node_name(name: str) -> str:
    """gLite's ``checkNodeName``: characters a node name may not contain."""
    return name.replace(".", "_").replace("/", "I").replace("*", "-").replace("$", "_S_")


def _texts(value: Any, ad: ClassAd) -> list[str]:
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if type(value) is int:
        return [str(value)]
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        out: list[str] = []
        for item in value:
            out.extend(_texts(item, ad))
        return out
    return []


def parameter_values(ad: ClassAd) -> Sequence[str]:
    """The texts ``_PARAM_`` may take, before ParameterStart/ParameterStep are applied.

    An integer N gives a lazy sequence (``"0"`` .. ``"N-1"``), so that a huge N costs nothing
    until the nodes are counted against the limit.
    """
    line, column = position(ad, "Parameters")
    expr = ad.get("Parameters")
    if expr is None:
        raise JDLExpansionError(
            "a parametric job needs Parameters (an integer N or a list of values); add e.g. "
            "Parameters = 10;",
            line=line,
            column=column,
        )
    value = value_of(ad, "Parameters")
    if type(value) is int:
        if value <= 0:
            raise JDLExpansionError(
                f"Parameters = {value}: the number of parameters must be greater than 0",
                line=line,
                column=column,
            )
        return _Numbers(range(value))
    if isinstance(value, list):
        return _list_values(ad, expr_text=unparse(expr), value=value)
    raise JDLExpansionError(
        f"Parameters = {unparse(expr)}: must be an integer or a list of values",
        line=line,
        column=column,
    )


class _Numbers(Sequence[str]):
    """``str(i)`` for ``i`` in a range, computed on access (slicing keeps it lazy)."""

    def __init__(self, numbers: range) -> None:
        self._numbers = numbers

    def __len__(self) -> int:
        return len(self._numbers)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> _Numbers: ...

    def __getitem__(self, index: int | slice) -> str | _Numbers:
        if isinstance(index, slice):
            return _Numbers(self._numbers[index])
        return str(self._numbers[index])

    def __iter__(self) -> Iterator[str]:
        return map(str, self._numbers)


def _list_values(ad: ClassAd, *, expr_text: str, value: list[Any]) -> list[str]:
    """Elements of a Parameters list; unquoted words keep their text as gLite's Expr2List."""
    items = list_items(expr_text)
    out: list[str] = []
    for index, item in enumerate(value):
        texts = _texts(item, ad)
        if not texts and index < len(items):
            texts = [items[index]]
        out.extend(texts)
    return out


def template(ad: ClassAd, defaults: Defaults | None) -> ClassAd:
    """The node template: the ad without the parametric attributes, defaults applied."""
    result = ad.copy()
    for name in _REMOVED:
        if name in result:
            del result[name]
    remaining = [v for v in string_list(ad, "JobType") if v.lower() != "parametric"]
    if "JobType" in result:
        del result["JobType"]
    if remaining:
        result["JobType"] = remaining[0] if len(remaining) == 1 else remaining
    add_environment(result, f"{PARAMETER_VALUE}={PLACEHOLDER}")
    return apply_defaults(result, defaults)


def expand_parametric(
    ad: ClassAd, defaults: Defaults | None, max_nodes: int = MAX_NODES
) -> list[Node]:
    """The nodes of a parametric job (see the module docstring), at most ``max_nodes``."""
    values = parameter_values(ad)
    start = int_of(ad, "ParameterStart")
    step = int_of(ad, "ParameterStep")
    start = 0 if start is None else start
    step = 1 if step is None else step
    if step == 0:
        line, column = position(ad, "ParameterStep")
        raise JDLExpansionError(
            "JDL Attribute ParameterStep must be different from zero, division by zero not allowed",
            line=line,
            column=column,
        )
    if step < 0 or start < 0:
        name = "ParameterStep" if step < 0 else "ParameterStart"
        line, column = position(ad, name)
        raise JDLExpansionError(f"{name} cannot be negative", line=line, column=column)
    selected = values[start::step]
    if len(selected) > max_nodes:
        line, column = position(ad, "Parameters")
        raise JDLExpansionError(
            f"this parametric job would have {len(selected)} nodes, more than the limit of "
            f"{max_nodes}",
            line=line,
            column=column,
        )
    chosen = list(selected)
    if not chosen:
        line, column = position(ad, "ParameterStart")
        raise JDLExpansionError(
            f"no node to generate: ParameterStart = {start} is beyond the "
            f"{len(values)} parameter value(s)",
            line=line,
            column=column,
        )
    for value in chosen:
        if '"' in value or "\\" in value:
            line, column = position(ad, "Parameters")
            raise JDLExpansionError(
                f"parameter value {value!r} contains a quote or a backslash, which cannot be "
                "substituted for _PARAM_ inside a string",
                line=line,
                column=column,
            )
    text = unparse(template(ad, defaults))
    seen: set[str] = set()
    nodes: list[Node] = []
    append = nodes.append
    replace = text.replace
    clean = not any(c in value for value in chosen for c in "./*$")
    for value in chosen:
        name = "Node_" + value if clean else sanitise_node_name("Node_" + value)
        if name in seen:
            line, column = position(ad, "Parameters")
            raise JDLExpansionError(
                f"Duplicated NodeName({name}): parameter values must give distinct node names",
                node=name,
                line=line,
                column=column,
            )
        seen.add(name)
        append(Node(name, replace(PLACEHOLDER, value)))
    return nodes
