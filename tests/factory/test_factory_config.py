"""Factory configuration: the example file loads, every problem is reported with file, queue,
field and a fix, environment variables override the file, and the slot ad mapping."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from pilotwms.core.errors import ConfigurationError
from pilotwms.factory.backends import LocalBackend
from pilotwms.factory.config import (
    FactoryConfigError,
    FactorySettings,
    QueueConfig,
    load_factory_config,
    parse_factory_config,
    pilot_context,
    slot_attributes,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "factory.toml"


def test_example_file_loads() -> None:
    config = load_factory_config(EXAMPLE)
    assert [q.name for q in config.queues] == ["local", "slurm-short", "condor-gpu", "pbs-long"]
    slurm = config.queue("slurm-short")
    assert slurm.backend == "slurm"
    assert slurm.ad.cores == 4 and slurm.ad.tags == ("apptainer", "cvmfs")
    assert slurm.options.partition == "short"
    assert slurm.options.environment == {
        "APPTAINER_CACHEDIR": "/tmp/apptainer",
        "PILOTWMS_WORK_DIR": "/scratch/pilotwms",
    }
    assert slurm.ad.attributes == {"OpSys": "LINUX", "Arch": "X86_64"}
    assert slurm.rate_limit.rules().max_per_minute == 30
    assert config.settings.state_dir == Path("~/.pilotwms/factory").expanduser()
    assert config.queue("pbs-long").options.pbs_flavor == "pro"


def test_defaults_of_a_minimal_queue() -> None:
    config = parse_factory_config({"queues": {"q": {"backend": "local"}}})
    q = config.queues[0]
    assert (q.sched_min, q.sched_max, q.poll, q.wait_new, q.wait_term, q.max_runtime) == (
        0,
        10,
        30.0,
        60.0,
        300,
        None,
    )
    assert q.rate_limit.rules().backoff_s == (0.0, 60.0, 900.0, 1800.0, 3600.0)
    assert config.settings.server_url == "http://127.0.0.1:8080"


def test_unknown_queue_raises_keyerror_listing_queues() -> None:
    config = parse_factory_config({"queues": {"q": {"backend": "local"}}})
    with pytest.raises(KeyError, match="queues: q"):
        config.queue("nope")


def _problems(data: dict) -> list[str]:
    with pytest.raises(FactoryConfigError) as info:
        parse_factory_config(data, source="f.toml")
    assert isinstance(info.value, ConfigurationError)
    assert str(info.value).startswith("f.toml: ")
    return info.value.problems


@pytest.mark.parametrize(
    ("queue", "expected"),
    [
        ({"backend": "lsf"}, "queue 'q': field 'backend': Input should be 'local', 'slurm', "),
        ({"backend": "lsf"}, "(use one of: local, slurm, htcondor, pbs)"),
        ({}, "queue 'q': field 'backend': Field required (this field is required; add it)"),
        (
            {"backend": "local", "sched_mx": 3},
            "field 'sched_mx': Extra inputs are not permitted "
            "(unknown field; did you mean 'sched_max'?",
        ),
        (
            {"backend": "local", "sched_min": 5, "sched_max": 2},
            "sched_min (5) is larger than sched_max (2); raise sched_max or lower sched_min",
        ),
        (
            {"backend": "local", "sched_min": -1},
            "field 'sched_min': Input should be greater than or equal to 0",
        ),
        (
            {"backend": "local", "max_runtime": 7200, "ad": {"walltime_s": 3600}},
            "max_runtime (7200s) exceeds the pilot's walltime_s (3600s)",
        ),
        (
            {"backend": "local", "wait_term": 3600, "ad": {"walltime_s": 3600}},
            "pilots could never time out idle",
        ),
        (
            {"backend": "local", "options": {"partition": "short"}},
            "the local backend has no partitions",
        ),
        ({"backend": "htcondor", "options": {"partition": "short"}}, "HTCondor has no partitions"),
        (
            {"backend": "slurm", "options": {"directives": ["#SBATCH --qos=x"]}},
            "without the #SBATCH prefix",
        ),
        (
            {"backend": "slurm", "ad": {"cores": 0}},
            "field 'ad.cores': Input should be greater than or equal to 1",
        ),
        (
            {"backend": "slurm", "ad": {"core": 4}},
            "field 'ad.core': Extra inputs are not permitted (unknown field; did you mean 'cores'?",
        ),
        (
            {"backend": "slurm", "ad": {"walltime_s": "2h"}},
            "field 'ad.walltime_s': Input should be a valid integer",
        ),
        (
            {"backend": "slurm", "options": {"environment": {"1BAD": "x"}}},
            "'1BAD' is not a valid environment variable name",
        ),
        (
            {"backend": "slurm", "rate_limit": {"backoff_s": [0, -5]}},
            "back-off delays cannot be negative",
        ),
        (
            {"backend": "slurm", "rate_limit": {"max_per_minute": 0}},
            "field 'rate_limit.max_per_minute'",
        ),
        ({"backend": "local", "name": "x"}, "the table key is the queue's name; remove 'name'"),
    ],
)
def test_queue_problems_name_queue_field_and_fix(queue: dict, expected: str) -> None:
    problems = _problems({"queues": {"q": queue}})
    assert any(expected in p for p in problems), problems
    assert all(p.startswith("queue 'q': ") for p in problems)


def test_every_problem_is_reported_at_once() -> None:
    problems = _problems(
        {
            "factory": {"server_url": "wms.example.org"},
            "queues": {
                "ok": {"backend": "local"},
                "bad one": {"backend": "local"},
                "two": {"backend": "slurm", "sched_min": 3, "sched_max": 1, "ad": {"gpus": -1}},
            },
            "queue": {},
        }
    )
    text = "\n".join(problems)
    assert "top level: unknown table [queue]" in text and "did you mean [queues]?" in text
    assert "[factory]: field 'server_url': 'wms.example.org' is not an http(s) URL" in text
    assert "queue 'bad one': field 'name': queue name 'bad one' must be" in text
    assert "queue 'two': field 'ad.gpus'" in text
    assert len(problems) == 4  # the model validator of 'two' waits for its fields to be valid


def test_no_queues_is_a_problem() -> None:
    assert any("no queues" in p for p in _problems({"factory": {}}))


def test_unreadable_and_invalid_toml_files(tmp_path: Path) -> None:
    with pytest.raises(FactoryConfigError, match="cannot read the file"):
        load_factory_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[queues.q\nbackend = 1\n")
    with pytest.raises(FactoryConfigError, match=r"(?s)bad.toml: .*not valid TOML: Expected"):
        load_factory_config(bad)


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PILOTWMS_FACTORY_SERVER_URL", "https://wms.example.org/")
    config = parse_factory_config(
        {"factory": {"server_url": "http://file:1"}, "queues": {"q": {"backend": "local"}}}
    )
    assert config.settings.server_url == "https://wms.example.org"


def test_queue_dir_is_per_queue(tmp_path: Path) -> None:
    settings = FactorySettings(state_dir=tmp_path)
    assert settings.queue_dir("slurm-short") == tmp_path / "queues" / "slurm-short"


def test_slot_attributes_native_and_glue_names() -> None:
    queue = QueueConfig.model_validate(
        {
            "name": "slurm-short",
            "backend": "slurm",
            "max_runtime": 6600,
            "ad": {
                "cores": 4,
                "memory_mb": 8000,
                "walltime_s": 7200,
                "site": "NIKHEF",
                "tags": ["apptainer"],
                "gpus": 1,
                "attributes": {"OpSys": "LINUX", "Arch": "X86_64"},
            },
        }
    )
    attrs = slot_attributes(queue)
    assert (
        attrs["Cpus"] == attrs["GlueCEInfoTotalCPUs"] == attrs["GlueHostArchitectureSMPSize"] == 4
    )
    assert attrs["FreeCpus"] == attrs["GlueCEStateFreeCPUs"] == 4
    assert attrs["Memory"] == attrs["GlueHostMainMemoryRAMSize"] == 8000
    assert attrs["TimeLeft"] == 6600  # a pilot takes work until max_runtime
    assert attrs["GlueCEPolicyMaxWallClockTime"] == 110  # GLUE 1.3: minutes
    assert attrs["GlueCEPolicyMaxCPUTime"] == 440
    assert attrs["Tags"] == attrs["GlueHostApplicationSoftwareRunTimeEnvironment"] == ["apptainer"]
    assert attrs["Site"] == attrs["GlueSiteName"] == "NIKHEF"
    assert attrs["Queue"] == attrs["GlueCEName"] == "slurm-short"
    assert attrs["GlueCEUniqueID"] == "slurm:pilotwms/NIKHEF-slurm-short"
    assert attrs["GlueCEInfoLRMSType"] == attrs["BatchSystem"] == "slurm"
    assert attrs["GlueCEStateStatus"] == "Production"
    assert attrs["GPUs"] == 1
    assert (attrs["OpSys"], attrs["Arch"]) == ("LINUX", "X86_64")


def test_slot_attributes_are_what_the_agent_publishes(tmp_path: Path) -> None:
    """The factory evaluates Requirements against what a pilot will publish: run the real agent
    with the command line the local backend would use and ``--describe``, and compare."""
    pytest.importorskip("pilotwms.agent")
    config = parse_factory_config(
        {
            "queues": {
                "q": {
                    "backend": "local",
                    "ad": {"cores": 1, "memory_mb": 500, "site": "S", "tags": ["a", "b"]},
                }
            }
        }
    )
    queue = config.queues[0]
    settings = FactorySettings(state_dir=tmp_path)
    ctx = dataclasses.replace(pilot_context(queue, settings, "tok"), extra_args=("--describe",))
    done = subprocess.run(
        LocalBackend.command(ctx), capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    published = json.loads(done.stdout)
    expected = slot_attributes(queue)
    assert sorted(set(expected) - set(published)) == []
    node_facts = {"GlueCEUniqueID", "TimeLeft"} | {k for k in expected if "Policy" in k}
    differing = {
        name: (value, published[name])
        for name, value in expected.items()
        if name not in node_facts and published[name] != value
    }
    assert differing == {}


def test_attributes_cannot_redefine_the_slot(tmp_path: Path) -> None:
    problems = _problems(
        {"queues": {"q": {"backend": "local", "ad": {"attributes": {"Cpus": 64}}}}}
    )
    assert any("ad.attributes redefines Cpus" in p and "set ad.cores" in p for p in problems)


def test_pilot_context_from_queue_and_settings(tmp_path: Path) -> None:
    config = load_factory_config(EXAMPLE)
    settings = FactorySettings(state_dir=tmp_path, server_url="https://wms.example.org")
    url = "https://wms.example.org/api/v1/pilot/agent.pyz"
    ctx = pilot_context(config.queue("slurm-short"), settings, "tok", agent_url=url)
    assert (ctx.queue, ctx.site, ctx.cores, ctx.memory_mb, ctx.walltime_s) == (
        "slurm-short",
        "NIKHEF",
        4,
        8000,
        7200,
    )
    assert (ctx.wait_term, ctx.max_runtime, ctx.python) == (300, 6600, "/usr/bin/python3")
    assert ctx.agent == url
    assert ctx.partition == "short" and ctx.account == "pilotwms"
    assert ctx.directives == ("--qos=normal",)
    assert ctx.log_dir == tmp_path / "queues" / "slurm-short"
    assert ctx.server_url == "https://wms.example.org" and ctx.token == "tok"
    assert ctx.tags == ("apptainer", "cvmfs")
    local = pilot_context(config.queue("local"), settings, "tok", agent_url=url)
    assert local.agent is None  # the local backend runs the installed package
    warm = pilot_context(config.queue("slurm-short"), settings, "tok", agent_url=url, warm=True)
    assert warm.wait_term == 0  # keep-warm pilots never exit for being idle
