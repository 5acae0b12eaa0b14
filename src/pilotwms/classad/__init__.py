"""HTCondor's ClassAd language: parsing, evaluation, unparsing and matchmaking.

Glossary:

ad (ClassAd)
    A record of named expressions; a job, a slot or a resource description.
expression (Expr)
    A node of the syntax tree; evaluated lazily, compiled to a closure on first use.
UNDEFINED / ERROR
    The two non-values: a missing attribute, and an ill-typed or failed expression.
MY / TARGET
    The two sides of a match: an ad's own attributes and its counterpart's (``other.``).
Requirements / Rank
    What an ad needs from its counterpart (true to match), and how much it likes it.
"""

from pilotwms.classad.ad import ClassAd
from pilotwms.classad.ast import Expr
from pilotwms.classad.errors import ClassAdSyntaxError
from pilotwms.classad.match import conjuncts, explain, matches, rank, symmetric_match
from pilotwms.classad.parser import parse_ad, parse_expr
from pilotwms.classad.unparse import unparse
from pilotwms.classad.values import ERROR, UNDEFINED

__all__ = [
    "ERROR",
    "UNDEFINED",
    "ClassAd",
    "ClassAdSyntaxError",
    "Expr",
    "conjuncts",
    "explain",
    "matches",
    "parse_ad",
    "parse_expr",
    "rank",
    "symmetric_match",
    "unparse",
]
