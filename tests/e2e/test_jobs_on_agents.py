"""Real jobs on real agents: sandboxes, arguments, environment, standard streams, compound
jobs spread over two pilots, and Requirements that choose one pilot of two."""

from __future__ import annotations

import io
import tarfile

import httpx
from cluster import AgentFactory, site_jdl, status, submit

from pilot_client import wait_for
from wms_server import RunningServer

RUN_SH = b"""#!/bin/sh
echo "args: $# [$1] [$2] [$3]"
echo "mode: $MODE"
read line
echo "stdin: $line"
cat data.txt > copy.txt
echo "to stderr" >&2
"""


def test_job_with_sandboxes_arguments_environment_and_stdin_runs_and_its_output_downloads(
    e2e_server: RunningServer,
    pilot_token: str,
    user: httpx.Client,
    start_agent: AgentFactory,
    site: str,
) -> None:
    jdl = site_jdl(
        site,
        'Executable = "run.sh"; Arguments = "one \\"two words\\" three";'
        ' Environment = {"MODE=fast"}; StdInput = "input.txt";'
        ' StdOutput = "std.out"; StdError = "std.err";'
        ' InputSandbox = {"run.sh", "input.txt", "data.txt"};'
        ' OutputSandbox = {"std.out", "std.err", "copy.txt"};',
    )
    job = submit(
        user,
        jdl,
        {"run.sh": RUN_SH, "input.txt": b"hello from stdin\n", "data.txt": b"payload data\n"},
    )["id"]
    start_agent(e2e_server.base_url, pilot_token, site)
    wait_for(lambda: status(user, job)["state"] == "DONE", timeout=90, what="job DONE")
    final = status(user, job)
    assert (final["done_code"], final["exit_code"]) == ("ok", 0)
    out = user.get(f"/api/v1/jobs/{job}/output/std.out").text
    assert out == "args: 3 [one] [two words] [three]\nmode: fast\nstdin: hello from stdin\n"
    assert user.get(f"/api/v1/jobs/{job}/output/std.err").text == "to stderr\n"
    archive = user.get(f"/api/v1/jobs/{job}/output.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        copy = tar.extractfile("copy.txt")
        assert copy is not None and copy.read() == b"payload data\n"
    events = [e["event"] for e in user.get(f"/api/v1/jobs/{job}/events").json()["events"]]
    assert events[:2] == ["RegJob", "Accepted"]
    assert {"Match", "Running", "ReallyRunning", "Done"} <= set(events)


def test_parametric_job_and_collection_run_on_two_pilots(
    e2e_server: RunningServer,
    pilot_token: str,
    user: httpx.Client,
    start_agent: AgentFactory,
    site: str,
) -> None:
    # Each node holds its slot a moment, so that both pilots get a share.
    para = submit(
        user,
        site_jdl(
            site,
            'JobType = "Parametric"; Executable = "/bin/sh";'
            ' Arguments = "-c \\"sleep 0.3; echo node _PARAM_\\""; StdOutput = "out.txt";'
            ' OutputSandbox = {"out.txt"}; Parameters = 8;',
        ),
    )
    collection = submit(
        user,
        f"""[ Type = "Collection"; Requirements = other.GlueSiteName == "{site}";
        Nodes = {{
          [ Executable = "/bin/sh"; Arguments = "-c 'echo first > f.txt'";
            OutputSandbox = {{"f.txt"}}; NodeName = "first"; ],
          [ Executable = "/bin/sh"; Arguments = "-c 'echo second > f.txt'";
            OutputSandbox = {{"f.txt"}}; NodeName = "second"; ]
        }}; ]""",
    )
    first = start_agent(e2e_server.base_url, pilot_token, site, cores=1)
    second = start_agent(e2e_server.base_url, pilot_token, site, cores=1)
    for parent in (para["id"], collection["id"]):
        wait_for(lambda p=parent: status(user, p)["state"] == "DONE", timeout=120, what="DONE")
        assert status(user, parent)["done_code"] == "ok"
    files = user.get(f"/api/v1/jobs/{para['id']}/output").json()["files"]
    assert len(files) == 8
    texts = sorted(user.get(f"/api/v1/jobs/{para['id']}/output/{f['name']}").text for f in files)
    assert texts == [f"node {i}\n" for i in range(8)]
    names = {f["name"] for f in user.get(f"/api/v1/jobs/{collection['id']}/output").json()["files"]}
    assert names == {"first/f.txt", "second/f.txt"}
    pilots = user.get("/api/v1/pilots").json()["pilots"]
    ran = {p["id"]: p["jobs_run"] for p in pilots if p["site"] == site}
    assert len(ran) == 2 and all(n >= 1 for n in ran.values()), ran
    assert sum(ran.values()) == 10
    del first, second


def test_job_whose_requirements_match_one_of_two_pilots_runs_there(
    e2e_server: RunningServer,
    pilot_token: str,
    user: httpx.Client,
    start_agent: AgentFactory,
    site: str,
) -> None:
    start_agent(e2e_server.base_url, pilot_token, site, tags="python3")
    start_agent(e2e_server.base_url, pilot_token, site, tags="python3,VO-dteam-geant4")
    wait_for(
        lambda: (
            len([p for p in user.get("/api/v1/pilots").json()["pilots"] if p["site"] == site]) == 2
        ),
        timeout=60,
        what="two pilots registered",
    )
    jdl = site_jdl(
        site,
        'Executable = "/bin/true"; Rank = other.GlueCEStateFreeCPUs;'
        ' Requirements = other.GlueSiteName == "' + site + '" &&'
        ' Member("VO-dteam-geant4", other.GlueHostApplicationSoftwareRunTimeEnvironment);',
    ).replace(f'Requirements = other.GlueSiteName == "{site}"; ]', "]")
    listed = user.post("/api/v1/jobs/list-match", json={"jdl": jdl})
    assert listed.status_code == 200, listed.text
    ours = {p["id"]: p for p in user.get("/api/v1/pilots").json()["pilots"] if p["site"] == site}
    geant4 = next(
        pid
        for pid, p in ours.items()
        if "VO-dteam-geant4" in p["ad"]["GlueHostApplicationSoftwareRunTimeEnvironment"]
    )
    plain = next(pid for pid in ours if pid != geant4)
    result = listed.json()
    assert [m["id"] for m in result["matching"] if m["kind"] == "pilot" and m["id"] in ours] == [
        geant4
    ]
    refusal = next(n for n in result["not_matching"] if n["id"] == plain)
    assert [(f["clause"], f["value"]) for f in refusal["failed"]] == [
        (
            'Member("VO-dteam-geant4", other.GlueHostApplicationSoftwareRunTimeEnvironment)',
            False,
        )
    ]
    clauses = [(c["clause"], c["ok"]) for c in refusal["clauses"] if c["side"] == "job"]
    assert (f'other.GlueSiteName == "{site}"', True) in clauses

    job = submit(user, jdl)["id"]
    wait_for(lambda: status(user, job)["state"] == "DONE", timeout=90, what="job DONE")
    pilots = {p["id"]: p for p in user.get("/api/v1/pilots").json()["pilots"]}
    assert pilots[geant4]["jobs_run"] == 1 and pilots[plain]["jobs_run"] == 0


def test_resources_are_filtered_by_a_classad_constraint(
    e2e_server: RunningServer,
    pilot_token: str,
    user: httpx.Client,
    start_agent: AgentFactory,
    site: str,
) -> None:
    admin = e2e_server.user_client(admin=True)
    queue_ad = {"GlueSiteName": site, "Cpus": 16, "GlueCEStateStatus": "Production"}
    assert admin.put(f"/api/v1/admin/queues/{site}-big", json={"ad": queue_ad}).status_code == 200
    assert user.put(f"/api/v1/admin/queues/{site}-x", json={"ad": {}}).status_code == 403
    start_agent(e2e_server.base_url, pilot_token, site, cores=1)
    constraint = f'GlueSiteName == "{site}"'

    def ours() -> list[dict]:
        reply = user.get("/api/v1/resources", params={"constraint": constraint})
        assert reply.status_code == 200, reply.text
        return list(reply.json()["resources"])

    found = wait_for(lambda: len(ours()) == 2 and ours(), timeout=60, what="pilot and queue")
    assert sorted(r["kind"] for r in found) == ["pilot", "queue"]
    big = user.get("/api/v1/resources", params={"constraint": f"{constraint} && Cpus >= 8"})
    assert [r["id"] for r in big.json()["resources"]] == [f"{site}-big"]
    bad = user.get("/api/v1/resources", params={"constraint": "Cpus >="})
    assert bad.status_code == 400
