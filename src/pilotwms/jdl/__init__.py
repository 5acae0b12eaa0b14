"""gLite's Job Description Language on top of the ClassAd engine.

A JDL is a ClassAd describing a job (``Executable``, ``Arguments``, sandboxes, ``Requirements``,
``Rank``...) or a compound request: a parametric job (``JobType = "Parametric"``), a collection
(``Type = "collection"``) or a DAG (``Type = "dag"``). This package reads JDL text
(:func:`parse_jdl`), checks it against gLite's rules (:func:`validate`, :func:`check`), applies
gLite's defaults (:func:`apply_defaults`) and expands compound requests into the concrete jobs
gLite would generate (:func:`expand`). :func:`resources` and :func:`input_sandbox` give the views
the server stores and the matcher groups by.

It is pure (no I/O except reading the node files a collection or DAG names) and depends only on
``pilotwms.classad``; its errors derive from :class:`JDLError`, which the server maps to HTTP.

Modules: ``schema`` (the attribute table), ``syntax`` (parsing), ``validation`` (entry point,
collections and DAGs) with ``attributes`` (rules on one attribute), ``rules`` (rules on a job)
and ``problems`` (what they report); ``defaults``; ``expansion`` with ``parametric``, ``dag``,
``inheritance`` and ``nodes`` (its result); ``sandbox``; ``resources``; ``errors``.
"""

from pilotwms.jdl.defaults import Defaults, apply_defaults
from pilotwms.jdl.errors import JDLError, JDLExpansionError, JDLSyntaxError, JDLValidationError
from pilotwms.jdl.expansion import expand
from pilotwms.jdl.nodes import Expansion, Node
from pilotwms.jdl.resources import ResourceRequest, resources
from pilotwms.jdl.sandbox import SandboxRef, input_sandbox
from pilotwms.jdl.schema import SCHEMA, AttributeSpec, AttrType
from pilotwms.jdl.syntax import load_jdl, parse_jdl
from pilotwms.jdl.validation import Problem, ValidationReport, check, validate

__all__ = [
    "SCHEMA",
    "AttrType",
    "AttributeSpec",
    "Defaults",
    "Expansion",
    "JDLError",
    "JDLExpansionError",
    "JDLSyntaxError",
    "JDLValidationError",
    "Node",
    "Problem",
    "ResourceRequest",
    "SandboxRef",
    "ValidationReport",
    "apply_defaults",
    "check",
    "expand",
    "input_sandbox",
    "load_jdl",
    "parse_jdl",
    "resources",
    "validate",
]
