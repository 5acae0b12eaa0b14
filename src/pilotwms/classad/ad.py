"""The ``ClassAd`` record: a case-insensitive ordered mapping of attribute names to expressions."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from pilotwms.classad.ast import Expr, ListExpr, Literal, RecordExpr
from pilotwms.classad.values import (
    INT_MAX,
    INT_MIN,
    UNDEFINED,
    ErrorType,
    UndefinedType,
    Value,
)


class ClassAd(MutableMapping[str, Expr]):
    """A ClassAd record.

    Keys are looked up case-insensitively and keep the spelling of their first definition.
    Values are ``Expr`` nodes; assigning a plain Python value (``bool``, ``int``, ``float``,
    ``str``, ``list``, ``dict``, ``ClassAd``, ``UNDEFINED``, ``ERROR``) wraps it in the
    equivalent expression.  Equality is structural: names compare case-insensitively and
    expressions without their source positions.

    A record nested in another (``[a = [b = 1]]``) evaluates to a view of the same attributes
    whose ``_parent`` is the enclosing ad, which is how ``parent.`` and unscoped lookups climb
    out of nested records.
    """

    __slots__ = ("_attrs", "_names", "_parent", "_positions")

    _attrs: dict[str, Expr]
    _names: dict[str, str]
    _positions: dict[str, tuple[int, int]]
    _parent: ClassAd | None

    def __init__(self, attributes: Mapping[str, Any] | None = None) -> None:
        self._attrs = {}
        self._names = {}
        self._positions = {}
        self._parent = None
        if attributes:
            for name, value in attributes.items():
                self[name] = value

    @classmethod
    def _from_parsed(
        cls,
        attrs: dict[str, Expr],
        names: dict[str, str],
        positions: dict[str, tuple[int, int]],
    ) -> ClassAd:
        ad = cls.__new__(cls)
        ad._attrs = attrs
        ad._names = names
        ad._positions = positions
        ad._parent = None
        return ad

    def _scoped(self, parent: ClassAd | None) -> ClassAd:
        """The same attributes seen from inside ``parent`` (no copy of the dictionaries)."""
        view = ClassAd.__new__(ClassAd)
        view._attrs = self._attrs
        view._names = self._names
        view._positions = self._positions
        view._parent = parent
        return view

    # --- mapping protocol ------------------------------------------------------------

    def __getitem__(self, name: str) -> Expr:
        return self._attrs[name.lower()]

    def __setitem__(self, name: str, value: Any) -> None:
        lname = name.lower()
        if lname not in self._attrs:
            self._names[lname] = name
            self._positions[lname] = (0, 0)
        self._attrs[lname] = to_expr(value)

    def __delitem__(self, name: str) -> None:
        lname = name.lower()
        del self._attrs[lname]
        del self._names[lname]
        del self._positions[lname]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._attrs

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._attrs)

    def get(self, name: str, default: Any = None) -> Any:
        return self._attrs.get(name.lower(), default)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassAd):
            return NotImplemented
        return self._attrs == other._attrs

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        from pilotwms.classad.unparse import unparse

        return f"ClassAd({unparse(self)!r})"

    def __str__(self) -> str:
        from pilotwms.classad.unparse import unparse

        return unparse(self)

    # --- ClassAd-specific ------------------------------------------------------------

    def name_of(self, name: str) -> str:
        """The spelling ``name`` had where it was first defined."""
        return self._names[name.lower()]

    def copy(self) -> ClassAd:
        """A shallow copy: the dictionaries are new, the (immutable) expressions shared."""
        return ClassAd._from_parsed(dict(self._attrs), dict(self._names), dict(self._positions))

    def position(self, name: str) -> tuple[int, int]:
        """``(line, column)`` of the attribute's name in the parsed text; ``(0, 0)`` if it was
        set from Python."""
        return self._positions[name.lower()]

    def evaluate(self, name: str, target: ClassAd | None = None) -> Value:
        """The value of attribute ``name`` with ``target`` as the other ad (UNDEFINED if
        missing)."""
        from pilotwms.classad.evaluator import evaluate_attribute

        return evaluate_attribute(self, name.lower(), target)

    @classmethod
    def from_python(cls, mapping: Mapping[str, Any]) -> ClassAd:
        """Builds an ad from plain values: nested mappings become records, sequences lists."""
        return cls(mapping)

    def to_python(self) -> dict[str, Any]:
        """Every attribute evaluated; nested records become dicts (UNDEFINED/ERROR stay)."""
        return {self._names[k]: _value_to_python(self.evaluate(k)) for k in self._attrs}


def _value_to_python(v: Value) -> Any:
    if isinstance(v, ClassAd):
        return v.to_python()
    if type(v) is list:
        return [_value_to_python(x) for x in v]
    return v


def to_expr(value: Any) -> Expr:
    """The expression that evaluates to the Python value ``value``."""
    if isinstance(value, Expr):
        return value
    t = type(value)
    if t is bool or t is str or t is float or isinstance(value, UndefinedType | ErrorType):
        return Literal(value)
    if t is int:
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError(f"integer {value} does not fit in a ClassAd integer (64 bits)")
        return Literal(value)
    if value is None:
        return Literal(UNDEFINED)
    if isinstance(value, ClassAd):
        return RecordExpr(value.copy())
    if isinstance(value, Mapping):
        return RecordExpr(ClassAd(value))
    if isinstance(value, list | tuple):
        return ListExpr(tuple(to_expr(v) for v in value))
    if isinstance(value, int | float):
        return to_expr(int(value) if isinstance(value, int) else float(value))
    raise TypeError(f"cannot turn {type(value).__name__} into a ClassAd expression")
