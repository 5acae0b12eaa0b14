"""The gLite JDL attribute schema, as data.

One :class:`AttributeSpec` per attribute name that gLite's JDL library, WMProxy, CREAM or DIRAC
give a meaning to (``glite-jdl.md`` section 1 and the DIRAC dialect of the corpus). Validation,
defaults, expansion and the ``pilotwms jdl`` command read this table rather than hard-coding
names, and the misspelling warnings are computed against it.

Types follow the checker of gLite's library (``JdlAttributeList``): where gLite accepts
"a string or a list of strings" the type is :attr:`AttrType.STRING_OR_LIST`. Attributes of the
``private``/``cream`` dialects are WMS-internal or CREAM-only: accepted, mostly not type-checked
(gLite checks only the names in its lists), listed so that they are not reported as misspellings.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class AttrType(StrEnum):
    """The value types the checker knows."""

    STRING = "string"
    STRING_OR_LIST = "string or list of strings"
    STRING_LIST = "list of strings"
    INT = "integer"
    NUMBER = "number"
    BOOL = "boolean"
    EXPRESSION = "boolean expression"
    NUMERIC_EXPRESSION = "numeric expression"
    RECORD = "record"
    RECORD_LIST = "record or list of records"
    INT_OR_LIST = "integer or list"
    NODES = "nodes (record for a DAG, list for a collection)"
    DEPENDENCIES = "list of {parent, child} pairs"
    ANY = "any expression"


#: Job types of a single job (values of ``JobType``).
JOB_TYPES: frozenset[str] = frozenset({"normal", "parametric", "interactive", "mpich"})
#: Request types (values of ``Type``) beyond ``job``.
COMPOUND_TYPES: frozenset[str] = frozenset({"collection", "dag"})
ALL: frozenset[str] = JOB_TYPES | COMPOUND_TYPES
JOBS: frozenset[str] = JOB_TYPES
COMPOUND: frozenset[str] = COMPOUND_TYPES
PARAMETRIC: frozenset[str] = frozenset({"parametric"})


@dataclass(frozen=True)
class AttributeSpec:
    """What one attribute means and what values it takes.

    ``default`` is the value gLite assumes when the attribute is absent, as JDL text (``None``:
    no default). ``job_types`` lists the job types (``normal``, ``parametric``, ``interactive``,
    ``mpich``) and request types (``collection``, ``dag``) that use it. ``minimum`` is the
    smallest integer accepted. ``dialect`` is ``glite`` (user attributes of the gLite JDL),
    ``private`` (set by the WMS itself), ``cream`` (CREAM direct submission), ``dirac`` (DIRAC's
    JDL) or ``pilotwms`` (our own resource attributes).
    """

    name: str
    type: AttrType
    meaning: str
    default: str | None = None
    mandatory: bool = False
    job_types: frozenset[str] = field(default=ALL)
    minimum: int | None = None
    dialect: str = "glite"
    deprecated: str | None = None


class Schema(Mapping[str, AttributeSpec]):
    """A case-insensitive, ordered mapping of attribute name to :class:`AttributeSpec`."""

    def __init__(self, specs: list[AttributeSpec]) -> None:
        self._specs: dict[str, AttributeSpec] = {}
        for spec in specs:
            key = spec.name.lower()
            if key in self._specs:
                raise ValueError(f"attribute {spec.name} declared twice in the schema")
            self._specs[key] = spec

    def __getitem__(self, name: str) -> AttributeSpec:
        return self._specs[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._specs

    def __iter__(self) -> Iterator[str]:
        return (spec.name for spec in self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def lookup(self, name: str) -> AttributeSpec | None:
        """The spec of ``name`` (any case), or ``None`` for an attribute gLite does not know."""
        return self._specs.get(name.lower())


def _a(
    name: str,
    type_: AttrType,
    meaning: str,
    *,
    default: str | None = None,
    mandatory: bool = False,
    job_types: frozenset[str] = ALL,
    minimum: int | None = None,
    dialect: str = "glite",
    deprecated: str | None = None,
) -> AttributeSpec:
    return AttributeSpec(
        name, type_, meaning, default, mandatory, job_types, minimum, dialect, deprecated
    )


S = AttrType.STRING
SL = AttrType.STRING_OR_LIST
I = AttrType.INT  # noqa: E741 - reads as a type letter in the table below
B = AttrType.BOOL
ANY = AttrType.ANY
_P = "private"
_C = "cream"
_D = "dirac"

_SPECS: list[AttributeSpec] = [
    # Request and job type
    _a("Type", S, "request type: job, dag or collection", default='"job"'),
    _a(
        "JobType",
        SL,
        "job type: normal, mpich, parametric or interactive",
        default='"normal"',
        job_types=JOBS,
    ),
    # Executable, arguments, standard streams
    _a(
        "Executable",
        S,
        "command to run: an absolute path on the worker node or a file of the InputSandbox",
        mandatory=True,
        job_types=JOBS,
    ),
    _a("Arguments", S, "the command line arguments, as one string", job_types=JOBS),
    _a("StdInput", S, "file given to the job as standard input", job_types=JOBS),
    _a("StdOutput", S, "file receiving the job's standard output", job_types=JOBS),
    _a("StdError", S, "file receiving the job's standard error", job_types=JOBS),
    # Sandboxes
    _a("InputSandbox", SL, "files copied to the worker node before the job starts"),
    _a("InputSandboxBaseURI", S, "protocol://address prefixed to relative InputSandbox entries"),
    _a(
        "InputSandboxDestFileName",
        ANY,
        "file names of the InputSandbox entries on the worker node",
        dialect=_P,
    ),
    _a("OutputSandbox", SL, "files brought back from the worker node when the job ends"),
    _a("OutputSandboxDestURI", SL, "one destination URI per OutputSandbox entry"),
    _a("OutputSandboxBaseDestURI", S, "directory URI receiving every OutputSandbox file"),
    _a("AllowZippedISB", B, "upload the InputSandbox as compressed archives", default="false"),
    _a("ZippedISB", ANY, "names of the InputSandbox archives", dialect=_P),
    # Environment, pre/post scripts
    _a("Environment", SL, 'environment variables of the job, "NAME=value"', job_types=JOBS),
    _a("Prologue", S, "script run before the job; the job is not run if it fails", job_types=JOBS),
    _a("PrologueArguments", S, "arguments of the Prologue", job_types=JOBS),
    _a("Epilogue", S, "script run after the job", job_types=JOBS),
    _a("EpilogueArguments", S, "arguments of the Epilogue", job_types=JOBS),
    # Matchmaking
    _a(
        "Requirements",
        AttrType.EXPRESSION,
        "constraint a slot must satisfy (other.X names the slot's attributes)",
        default='other.GlueCEStateStatus == "Production"',
    ),
    _a(
        "Rank",
        AttrType.NUMERIC_EXPRESSION,
        "preference among matching slots, larger is better",
        default="-other.GlueCEStateEstimatedResponseTime",
    ),
    _a("FuzzyRank", B, "choose among matching slots at random, weighted by Rank", default="false"),
    _a(
        "SignificantAttributes",
        AttrType.STRING_LIST,
        "attributes that group collection nodes for bulk matchmaking",
        job_types=COMPOUND,
    ),
    _a("SubmitTo", S, "CE id to submit to, bypassing matchmaking"),
    _a("ShortDeadlineJob", B, "the job must run in a short-deadline queue", default="false"),
    _a("EnableWmsFeedback", B, "only CREAM CEs may run the job"),
    _a("ExpiryTime", I, "seconds since the epoch after which an unmatched job is aborted"),
    # Resubmission
    _a(
        "RetryCount",
        I,
        "deep resubmissions: retries after the payload started",
        default="0",
    ),
    _a(
        "ShallowRetryCount",
        I,
        "shallow resubmissions: retries before the payload started (-1 disables)",
        default="0",
        minimum=-1,
    ),
    _a(
        "DefaultNodeRetryCount",
        I,
        "RetryCount of the nodes that have none",
        job_types=COMPOUND | PARAMETRIC,
        dialect=_P,
    ),
    _a(
        "DefaultNodeShallowRetryCount",
        I,
        "ShallowRetryCount of the nodes that have none",
        job_types=COMPOUND | PARAMETRIC,
        minimum=-1,
        dialect=_P,
    ),
    # VO, credentials, accounting
    _a("VirtualOrganisation", S, "the user's VO; forced on every node of a compound job"),
    _a("MyProxyServer", S, "MyProxy server (host[:port]) for proxy renewal"),
    _a("HLRLocation", S, "accounting server; exported as HLR_LOCATION"),
    _a("JobProvenance", S, "Job Provenance server"),
    _a("LBAddress", S, "Logging and Bookkeeping server (host:port)"),
    _a("UserTags", AttrType.RECORD, "user tags (name = string) logged with the job"),
    _a("MwVersion", S, "exported as EDG_MW_VERSION on the worker node"),
    _a("UserContact", SL, "e-mail address(es) of the user, user@host"),
    # Perusal
    _a("PerusalFileEnable", B, "allow peeking at output files while running", default="false"),
    _a("PerusalTimeInterval", I, "seconds between two uploads of perused files"),
    _a("PerusalFilesDestURI", S, "where perused file chunks go"),
    _a("PerusalListFileURI", S, "list of the files to peruse", dialect=_P),
    # Parallel / multi-core
    _a("CpuNumber", I, "number of CPUs (cores) the job needs", default="1", minimum=1),
    _a(
        "NodeNumber",
        I,
        "old name of CpuNumber",
        minimum=1,
        deprecated=(
            "NodeNumber attribute is going to be deprecated very soon. Use CpuNumber instead"
        ),
    ),
    _a("SMPGranularity", I, "cores per host"),
    _a("HostNumber", I, "number of hosts"),
    _a("WholeNodes", B, "exclusive use of whole nodes", default="false"),
    # Interactive jobs
    _a("ListenerHost", S, "host the interactive job's streams connect to"),
    _a("ListenerPort", I, "port of the listener (interactive jobs only)"),
    _a("ListenerPipeName", S, "named pipe of the listener"),
    # Data
    _a("InputData", SL, "input data (lfn:/guid:/si-lfn:/si-guid:) for data-driven matching"),
    _a(
        "DataRequirements",
        AttrType.RECORD_LIST,
        "[InputData; DataCatalogType; DataCatalog] records for data-driven matching",
    ),
    _a("DataAccessProtocol", SL, "protocols the job can read its input data with"),
    _a("DataCatalog", S, "data catalogue endpoint"),
    _a("DataCatalogType", S, "data catalogue type (DLI, SI)"),
    _a("StorageIndex", S, "storage index endpoint"),
    _a("ReplicaCatalog", S, "replica catalogue, protocol://address:port/DN"),
    _a("OutputSE", S, "preferred storage element for output data"),
    _a(
        "OutputData",
        AttrType.RECORD_LIST,
        "[OutputFile; StorageElement; LogicalFileName] records uploaded when the job ends",
    ),
    # Compound requests
    _a(
        "Nodes",
        AttrType.NODES,
        "the nodes of a DAG (record) or collection (list)",
        mandatory=True,
        job_types=COMPOUND,
    ),
    _a(
        "Dependencies",
        AttrType.DEPENDENCIES,
        "DAG edges {parent, child}; either side may be a list",
        job_types=frozenset({"dag"}),
    ),
    _a(
        "max_nodes_running",
        I,
        "most DAG nodes running at once (also Max_nodes_running)",
        job_types=frozenset({"dag"}),
    ),
    _a(
        "max_running_nodes",
        I,
        "the library's name for max_nodes_running",
        job_types=frozenset({"dag"}),
    ),
    _a("NodeName", S, "name of a collection or DAG node (default Node_<index>)"),
    _a("File", S, "JDL file describing a node, relative to the parent JDL", job_types=COMPOUND),
    _a("Description", AttrType.RECORD, "inline JDL of a DAG node", job_types=COMPOUND),
    _a("Node_Type", S, "type of a DAG node (edg-jdl)", job_types=COMPOUND),
    _a(
        "Node_Retry_Count",
        I,
        "old per-node retry count",
        job_types=COMPOUND,
        deprecated="node_retry_count attribute is deprecated",
    ),
    _a("NodesCollocation", B, "run all nodes on the same CE", job_types=COMPOUND | PARAMETRIC),
    _a(
        "Parameters",
        AttrType.INT_OR_LIST,
        "parametric job: values of _PARAM_ (an integer N means 0..N-1)",
        mandatory=True,
        job_types=PARAMETRIC,
    ),
    _a("ParameterStart", I, "first index into Parameters", default="0", job_types=PARAMETRIC),
    _a("ParameterStep", I, "index step (not 0)", default="1", job_types=PARAMETRIC),
    # Names the gLite library knows (checked types where gLite checks them)
    _a("edg_jobid", S, "the job id", dialect=_P),
    _a("CeMatch", SL, "CEs matched", dialect=_P),
    _a("CE_Rank", ANY, "rank of the matched CEs", dialect=_P),
    _a("CertificateSubject", S, "the user's certificate subject", dialect=_P),
    _a("ce_id", S, "the CE the job was sent to", dialect=_P),
    _a("lrms_type", S, "batch system of the CE", dialect=_P),
    _a("WMPInputSandboxBaseURI", S, "where WMProxy stores the InputSandbox", dialect=_P),
    _a("glite_wl_ui_DagNodeName", S, "DAG node name set by the UI", dialect=_P),
    _a("PartitionNumber", I, "partitionable jobs (deprecated)", dialect=_P),
    _a("LB_sequence_code", ANY, "Logging and Bookkeeping sequence code", dialect=_P),
    _a("X509UserProxy", ANY, "path of the user's proxy on the WMS", dialect=_P),
    _a("InputSandboxPath", ANY, "InputSandbox directory on the WMS", dialect=_P),
    _a("OutputSandboxPath", ANY, "OutputSandbox directory on the WMS", dialect=_P),
    _a("DefaultRank", ANY, "the default Rank the WMS used", dialect=_P),
    _a("VOMS_FQAN", ANY, "the user's VOMS FQAN", dialect=_P),
    _a("CeRequirements", ANY, "requirements forwarded to the CE", dialect=_P),
    _a("ReallyRunningToken", ANY, "token proving the payload started", dialect=_P),
    _a("edg_previous_matches", ANY, "CEs of the previous attempts", dialect=_P),
    _a("ReplansCount", ANY, "number of re-plannings", dialect=_P),
    _a("GlobusResourceContactString", ANY, "Condor-G contact string", dialect=_P),
    _a("JobSteps", ANY, "checkpointable jobs (deprecated)", dialect=_P),
    _a("CurrentStep", ANY, "checkpointable jobs (deprecated)", dialect=_P),
    _a("StepWeight", ANY, "checkpointable jobs (deprecated)", dialect=_P),
    _a("CreationTime", ANY, "creation time", dialect=_P),
    _a("ValidityTime", ANY, "validity time", dialect=_P),
    _a("fuzzy_factor", ANY, "FuzzyRank factor", dialect=_P),
    _a("NotificationType", ANY, "notification type", dialect=_P),
    _a("JobStatus", ANY, "status", dialect=_P),
    _a("JobState", ANY, "state", dialect=_P),
    _a("AbortedReason", ANY, "why the job was aborted", dialect=_P),
    _a("FailureReason", ANY, "why the job failed", dialect=_P),
    _a("MatchStatus", ANY, "match status", dialect=_P),
    _a("CancelStatus", ANY, "cancel status", dialect=_P),
    _a("TransferStatus", ANY, "transfer status", dialect=_P),
    _a("SandboxFile", ANY, "sandbox file", dialect=_P),
    _a("JDL_Original", ANY, "the JDL as the user sent it", dialect=_P),
    _a("Delegation_ID", ANY, "delegated proxy id", dialect=_P),
    _a("StateId", ANY, "state id", dialect=_P),
    _a("UserData", ANY, "user data", dialect=_P),
    _a("DSUpload", ANY, "data upload report", dialect=_P),
    _a("OutputFile", ANY, "OutputData: the file to upload", dialect=_P),
    _a("LogicalFileName", ANY, "OutputData: lfn:<name> to register", dialect=_P),
    _a("StorageElement", ANY, "OutputData: where to upload", dialect=_P),
    _a("Prejob", ANY, "pre-job (deprecated)", dialect=_P),
    _a("Postjob", ANY, "post-job (deprecated)", dialect=_P),
    _a("Ces", ANY, "CE list", dialect=_P),
    _a("MoveToCE", ANY, "move to CE", dialect=_P),
    _a("ExitCode", ANY, "exit code of the job", dialect=_P),
    # CREAM direct submission
    _a("BatchSystem", S, "batch system of the CREAM CE", dialect=_C),
    _a("QueueName", S, "queue of the CREAM CE", dialect=_C),
    _a("GPUNumber", I, "number of GPUs", dialect=_C),
    _a("GPUModel", S, "GPU model", dialect=_C),
    # DIRAC dialect
    _a("JobName", S, "name of the job", dialect=_D),
    _a("JobGroup", S, "group the job belongs to", dialect=_D),
    _a("CPUTime", I, "CPU time the job needs, in seconds", dialect=_D),
    _a("Site", SL, "site(s) the job may run at", dialect=_D),
    _a("BannedSites", SL, "sites the job must not run at", dialect=_D),
    _a("Tags", SL, "tags a slot must have (e.g. gpu)", dialect=_D),
    _a("Platform", SL, "platform the job needs (e.g. EL7)", dialect=_D),
    _a("Priority", I, "user priority of the job", dialect=_D),
    _a("Owner", S, "user name of the owner", dialect=_D),
    _a("OwnerGroup", S, "group of the owner", dialect=_D),
    _a("LogLevel", S, "log level of the job wrapper", dialect=_D),
    _a("OutputPath", S, "where output data goes", dialect=_D),
    _a("NumberOfProcessors", I, "number of processors", dialect=_D, minimum=1),
    _a("MaxRAM", I, "memory the job needs, in megabytes", dialect=_D),
    # pilotwms resource attributes (see resources.py)
    _a("Memory", I, "memory the job needs, in megabytes", dialect="pilotwms"),
    _a("MaxWallTime", I, "wall-clock time the job needs, in seconds", dialect="pilotwms"),
    _a("MaxCPUTime", I, "CPU time the job needs, in seconds", dialect="pilotwms"),
]

#: Every attribute gLite, CREAM, DIRAC or pilotwms gives a meaning to, case-insensitively.
SCHEMA = Schema(_SPECS)

#: Attributes whose presence marks a JDL written for DIRAC (corpus 070-080).
DIRAC_MARKERS: frozenset[str] = frozenset(
    spec.name.lower() for spec in _SPECS if spec.dialect == _D
)

__all__ = ["ALL", "COMPOUND", "JOBS", "SCHEMA", "AttrType", "AttributeSpec", "Schema"]
