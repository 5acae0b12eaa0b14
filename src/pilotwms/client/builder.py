"""A job description for people who do not write JDL: keyword arguments in, valid JDL out.

::

    JobDescription(
        executable="run.sh",
        arguments=["--input", "data.txt"],
        input_sandbox=["run.sh", "data.txt"],
        output_sandbox=["result.txt"],
        stdout="std.out",
        requirements='other.GlueCEStateStatus == "Production"',
    ).to_jdl()

Values are written with the ClassAd unparser, so quoting is always right; ``requirements`` and
``rank`` are ClassAd expressions and are parsed here, so a typo fails in the builder rather
than at the server. Attributes without a keyword go in ``extra`` (Python values) or
``extra_expressions`` (ClassAd expression texts).
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pilotwms.classad import ClassAd, ClassAdSyntaxError, parse_expr, unparse

__all__ = ["JobDescription"]

ParameterValue = int | float | str


def _expr(name: str, text: str) -> Any:
    try:
        return parse_expr(text)
    except ClassAdSyntaxError as exc:
        raise ValueError(f"{name} is not a valid ClassAd expression: {exc}") from exc


@dataclass(frozen=True)
class JobDescription:
    """The common JDL attributes as keyword arguments (gLite names in the comments)."""

    executable: str  # Executable
    arguments: Sequence[str] | str | None = None  # Arguments (a list is shell-quoted)
    input_sandbox: Sequence[str] = ()  # InputSandbox
    output_sandbox: Sequence[str] = ()  # OutputSandbox
    stdin: str | None = None  # StdInput
    stdout: str | None = None  # StdOutput
    stderr: str | None = None  # StdError
    environment: Mapping[str, str] = field(default_factory=dict)  # Environment
    requirements: str | None = None  # Requirements (expression)
    rank: str | None = None  # Rank (expression)
    retry_count: int | None = None  # RetryCount
    shallow_retry_count: int | None = None  # ShallowRetryCount
    cpus: int | None = None  # CpuNumber
    memory_mb: int | None = None  # Memory
    wall_time_s: int | None = None  # MaxWallTime
    name: str | None = None  # JobName
    output_sandbox_base_dest_uri: str | None = None  # OutputSandboxBaseDestURI
    input_sandbox_base_uri: str | None = None  # InputSandboxBaseURI
    parameters: int | Sequence[ParameterValue] | None = None  # Parameters (parametric job)
    parameter_start: int | None = None  # ParameterStart
    parameter_step: int | None = None  # ParameterStep
    extra: Mapping[str, Any] = field(default_factory=dict)
    extra_expressions: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parametric(
        cls,
        parameters: int | Sequence[ParameterValue],
        start: int = 0,
        step: int = 1,
        **fields: Any,
    ) -> JobDescription:
        """A parametric job: one node per value of ``_PARAM_`` (write ``_PARAM_`` in the
        arguments, file names...). ``parameters`` is a count (values ``start``, ``start +
        step``... below ``parameters``, as gLite counts) or the list of values itself."""
        if isinstance(parameters, int) and parameters < 1:
            raise ValueError("parameters must be at least 1")
        if not isinstance(parameters, int) and not parameters:
            raise ValueError("parameters must not be an empty list")
        if step < 1:
            raise ValueError("step must be at least 1")
        numeric = isinstance(parameters, int)
        return cls(
            parameters=parameters,
            parameter_start=start if numeric else None,
            parameter_step=step if numeric else None,
            **fields,
        )

    def with_changes(self, **changes: Any) -> JobDescription:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)

    def to_ad(self) -> ClassAd:
        """The description as a ClassAd (attributes in a conventional order)."""
        ad = ClassAd()
        if self.parameters is not None:
            ad["JobType"] = "Parametric"
        ad["Executable"] = self.executable
        if self.arguments is not None:
            ad["Arguments"] = (
                self.arguments if isinstance(self.arguments, str) else shlex.join(self.arguments)
            )
        for name, value in (
            ("StdInput", self.stdin),
            ("StdOutput", self.stdout),
            ("StdError", self.stderr),
            ("JobName", self.name),
            ("InputSandboxBaseURI", self.input_sandbox_base_uri),
        ):
            if value is not None:
                ad[name] = value
        if self.input_sandbox:
            ad["InputSandbox"] = list(self.input_sandbox)
        if self.output_sandbox:
            ad["OutputSandbox"] = list(self.output_sandbox)
        if self.output_sandbox_base_dest_uri is not None:
            ad["OutputSandboxBaseDestURI"] = self.output_sandbox_base_dest_uri
        if self.environment:
            ad["Environment"] = [f"{k}={v}" for k, v in self.environment.items()]
        for name, number in (
            ("RetryCount", self.retry_count),
            ("ShallowRetryCount", self.shallow_retry_count),
            ("CpuNumber", self.cpus),
            ("Memory", self.memory_mb),
            ("MaxWallTime", self.wall_time_s),
        ):
            if number is not None:
                ad[name] = int(number)
        if self.parameters is not None:
            ad["Parameters"] = (
                self.parameters if isinstance(self.parameters, int) else list(self.parameters)
            )
            if self.parameter_start is not None:
                ad["ParameterStart"] = self.parameter_start
            if self.parameter_step is not None:
                ad["ParameterStep"] = self.parameter_step
        if self.requirements is not None:
            ad["Requirements"] = _expr("requirements", self.requirements)
        if self.rank is not None:
            ad["Rank"] = _expr("rank", self.rank)
        for name, value in self.extra.items():
            ad[name] = value
        for name, text in self.extra_expressions.items():
            ad[name] = _expr(name, text)
        return ad

    def to_jdl(self) -> str:
        """The JDL text: one ``Name = value;`` per line, inside ``[ ]``."""
        ad = self.to_ad()
        body = "".join(f"  {name} = {unparse(ad[name])};\n" for name in ad)
        return f"[\n{body}]\n"
