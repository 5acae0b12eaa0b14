"""Rules on single attributes: types, integer ranges, string formats, misspellings.

Types follow gLite's checker (``JdlAttributeList``): a known attribute must evaluate to its
type; gLite's "string or list of strings" attributes take either. Integers are at least 0,
except ``CpuNumber``/``NodeNumber`` (at least 1) and ``ShallowRetryCount`` (-1 disables it).
String formats: no wildcards in file attributes, ``StdOutput`` not starting with ``..``,
``Environment`` entries ``NAME=value``, ``InputData`` ``lfn:``/``guid:``/``si-lfn:``/``si-guid:``,
``UserContact`` ``user@host``, ``SubmitTo`` a CE id, base URIs ``protocol://address``. Unknown
attributes are accepted; one within a small edit of a known name gets a "did you mean" warning.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pilotwms.classad import ERROR, UNDEFINED, ClassAd
from pilotwms.jdl.problems import Collector, Where
from pilotwms.jdl.schema import SCHEMA, AttributeSpec, AttrType
from pilotwms.jdl.values import (
    is_bare_word,
    is_int,
    is_number,
    list_items,
    spelling,
    strings_of,
    text_of,
    value_of,
)

WILDCARDS = "*{}[]?"
INPUTDATA_PREFIXES = ("lfn", "guid", "si-lfn", "si-guid")
_SUBMIT_TO = re.compile(r"^[^:/]+:\d+/[^-]+-[^-]+-.+$")
_KNOWN_LOWER = {name.lower(): name for name in SCHEMA}
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def _suggest(name: str) -> str | None:
    lowered = name.lower()
    matches = difflib.get_close_matches(lowered, list(_KNOWN_LOWER), n=1, cutoff=0.8)
    if not matches:
        return None
    known = matches[0]
    if abs(len(known) - len(lowered)) > 2:
        return None
    return _KNOWN_LOWER[known]


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if type(value) is int:
        return "an integer"
    if isinstance(value, float):
        return "a real"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, ClassAd):
        return "a record"
    return f"{value!r}"


def _check_type(ad: ClassAd, name: str, spec: AttributeSpec, at: Where, out: Collector) -> None:
    value = value_of(ad, name)
    shown = spelling(ad, name)
    text = text_of(ad, name)
    where = at(name)
    kind = spec.type
    if kind in (AttrType.ANY, AttrType.NODES, AttrType.DEPENDENCIES):
        return
    if kind is AttrType.EXPRESSION:
        if isinstance(value, (str, list, ClassAd)) or is_number(value):
            out.error(
                shown,
                where,
                f"{shown} must be a boolean expression, not {_type_name(value)}",
                "write a condition on the slot, e.g. "
                f'{shown} = other.GlueCEStateStatus == "Production";',
            )
        return
    if kind is AttrType.NUMERIC_EXPRESSION:
        if isinstance(value, (str, list, ClassAd)):
            out.error(
                shown,
                where,
                f"{shown} must be a numeric expression, not {_type_name(value)}",
                f"e.g. {shown} = -other.GlueCEStateEstimatedResponseTime;",
            )
        return
    if (value is UNDEFINED or value is ERROR) and is_bare_word(ad, name):
        out.soft(
            shown,
            where,
            f"{shown} = {text}: gLite reads the unquoted word {text} as an attribute "
            f"reference, not {_article(spec.type.value)}",
            f'quote it: {shown} = "{text}";',
        )
        return
    if kind in (AttrType.STRING, AttrType.STRING_OR_LIST, AttrType.STRING_LIST):
        _check_strings(ad, name, spec, value, at, out=out)
        return
    ok = {
        AttrType.INT: is_int(value),
        AttrType.NUMBER: is_number(value),
        AttrType.BOOL: isinstance(value, bool),
        AttrType.RECORD: isinstance(value, ClassAd),
        AttrType.RECORD_LIST: isinstance(value, ClassAd)
        or (isinstance(value, list) and all(isinstance(v, ClassAd) for v in value)),
        AttrType.INT_OR_LIST: is_int(value) or isinstance(value, list),
    }[kind]
    if not ok:
        dirac_output = kind is AttrType.RECORD_LIST and name.lower() == "outputdata"
        if dirac_output and strings_of(value) is not None:
            out.soft(
                shown,
                where,
                f"{shown} is a list of file names (DIRAC's form); gLite expects records "
                "[ OutputFile = ...; StorageElement = ...; LogicalFileName = ... ]",
                "pilotwms does not upload output data; use OutputSandbox for small files",
            )
            return
        example = {
            AttrType.INT: f"{shown} = 3;",
            AttrType.NUMBER: f"{shown} = 1.5;",
            AttrType.BOOL: f"{shown} = true;",
            AttrType.RECORD: f'{shown} = [ name = "value" ];',
            AttrType.RECORD_LIST: f"{shown} = {{ [ ... ], [ ... ] }};",
            AttrType.INT_OR_LIST: f'{shown} = 10; or {shown} = {{"a", "b"}};',
        }[kind]
        out.error(
            shown,
            where,
            f"{shown} must be {_article(kind.value)}, not {_type_name(value)} ({text})",
            f"write e.g. {example}",
        )
        return
    if kind is AttrType.INT:
        _check_range(shown, spec, value, where, out)


def _article(type_name: str) -> str:
    return ("an " if type_name[0] in "aeiou" else "a ") + type_name


def _check_range(
    shown: str, spec: AttributeSpec, value: int, where: tuple[int, int], out: Collector
) -> None:
    minimum = 0 if spec.minimum is None else spec.minimum
    if value >= minimum:
        return
    if minimum == 1:
        message = f"{shown} = {value}: value must be greater than 0"
    elif minimum == -1:
        message = f"{shown} = {value}: value must be greater than 0 (-1 to unset)"
    else:
        message = f"{shown} = {value}: value cannot be less than {minimum}"
    out.error(shown, where, message, f"use a value >= {minimum}")


def _check_strings(
    ad: ClassAd, name: str, spec: AttributeSpec, value: Any, at: Where, *, out: Collector
) -> None:
    shown = spelling(ad, name)
    where = at(name)
    if isinstance(value, list):
        if spec.type is AttrType.STRING:
            out.error(
                shown,
                where,
                f"{shown} must be a single string, not a list",
                f'write {shown} = "...";',
            )
            return
        bad = [i for i, v in enumerate(value) if not isinstance(v, str)]
        if bad:
            words = all(is_bare_word_text(item) for item in _list_items(ad, name))
            message = (
                f"{shown}: entr{'y' if len(bad) == 1 else 'ies'} "
                f"{', '.join(str(i) for i in bad)} of the list {'is' if len(bad) == 1 else 'are'} "
                "not a string"
            )
            hint = 'quote every entry: {"a", "b"}'
            if words:
                out.soft(shown, where, message + " (unquoted words)", hint)
            else:
                out.error(shown, where, message, hint)
            return
        strings = list(value)
    elif isinstance(value, str):
        strings = [value]
    else:
        out.error(
            shown,
            where,
            f"{shown} must be {_article(spec.type.value)}, not {_type_name(value)}",
            f'write {shown} = "...";',
        )
        return
    for s in strings:
        _check_string_format(shown, name.lower(), s, where, out)


def _list_items(ad: ClassAd, name: str) -> list[str]:
    return list_items(text_of(ad, name))


def is_bare_word_text(text: str) -> bool:
    """An unquoted word (DIRAC's string) or a quoted string."""
    stripped = text.strip()
    return bool(_WORD.match(stripped)) or stripped.startswith('"')


def _check_string_format(
    shown: str, lname: str, s: str, where: tuple[int, int], out: Collector
) -> None:
    if lname in ("executable", "stdinput", "stdoutput", "stderror", "prologue", "epilogue"):
        found = [c for c in WILDCARDS if c in s]
        if found:
            out.error(
                shown,
                where,
                f'{shown} = "{s}": wildcards not allowed ({" ".join(found)})',
                "name one file exactly",
            )
    if lname == "stdoutput" and s.startswith(".."):
        out.error(
            shown,
            where,
            f'{shown} = "{s}": may not begin with ".."',
            "use a file name or a path below the job's directory",
        )
    elif lname == "environment":
        var, sep, _ = s.partition("=")
        if not sep or not var.strip():
            out.error(
                shown,
                where,
                f'{shown}: "{s}" is not <variable>=<value>',
                f'write "NAME={s}" or remove it',
            )
    elif lname == "inputdata":
        prefix, sep, rest = s.partition(":")
        if out.dialect == "dirac":
            return
        if not sep or prefix not in INPUTDATA_PREFIXES or not rest:
            out.error(
                shown,
                where,
                f'{shown}: "{s}" is not lfn|guid|si-lfn|si-guid:<value>',
                'write e.g. "lfn:/grid/vo/path/file"',
            )
    elif lname == "usercontact":
        if s.count("@") != 1:
            out.error(shown, where, f'{shown}: "{s}" is not <user>@<host name>', "")
    elif lname in ("submitto", "ce_id"):
        if not _SUBMIT_TO.match(s):
            out.error(
                shown,
                where,
                f'{shown}: "{s}" is not '
                "<full-hostname>:<port-number>/jobmanager-<service>-<queuename>",
                'e.g. "ce.example.org:2119/jobmanager-pbs-long"',
            )
    elif lname in ("inputsandboxbaseuri", "wmpinputsandboxbaseuri") and "://" not in s:
        out.error(
            shown, where, f'{shown}: "{s}" is not protocol://address', 'e.g. "https://host/dir"'
        )


def check_attributes(ad: ClassAd, at: Where, out: Collector) -> None:
    for key in ad:
        name = str(key)
        spec = SCHEMA.lookup(name)
        if spec is None:
            suggestion = _suggest(name)
            if suggestion:
                out.warn(
                    name,
                    at(name),
                    f"{name}: did you mean {suggestion}?",
                    f"gLite ignores unknown attributes: {name} has no effect as spelled",
                )
            continue
        if spec.deprecated:
            out.warn(name, at(name), spec.deprecated, f"rename {name}")
        _check_type(ad, name, spec, at, out)


__all__ = ["WILDCARDS", "check_attributes"]
