"""The asynchronous client against the real server: submission with a sandbox uploaded once,
compound jobs, listing, wait, cancel and output, several jobs followed concurrently."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pilotwms.client import AsyncClient, ConflictError, JDLRejected, UploadProgress, WaitTimeout
from wms_server import RunningServer, add_output, advance

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_async_client_core_paths(server: RunningServer, tmp_path: Path) -> None:
    token = server.token(server.add_user())
    script = tmp_path / "run.sh"
    script.write_bytes(b"async " + tmp_path.name.encode())
    jdl = tmp_path / "job.jdl"
    jdl.write_text('Executable = "run.sh"; InputSandbox = {"run.sh"};')

    async def scenario() -> None:
        async with AsyncClient(server.base_url, token) as client:
            events: list[UploadProgress] = []
            job = await client.submit(jdl, progress=events.append)
            again: list[UploadProgress] = []
            twin = await client.submit(jdl, progress=again.append)
            assert [e.skipped for e in events] == [False] and [e.skipped for e in again] == [True]
            assert (await job.status()).state == "WAITING"
            para = await client.submit(EXAMPLES / "parametric.jdl")
            assert para.kind == "parametric" and len(await para.nodes()) == 5
            listed = [s.id async for s in client.jobs(page_size=2)]
            assert listed == [job.id, twin.id, para.id]
            with pytest.raises(WaitTimeout):
                await job.wait(timeout=0.2, poll=0.05)
            advance(server, job.id, "READY", "RUNNING", "DONE", done_code="ok", exit_code=0)
            add_output(server, job.id, "out/result.txt", b"42")
            finals = await asyncio.gather(job.wait(timeout=30, poll=0.1), twin.cancel())
            assert finals[0].succeeded and finals[1].cancelled == [twin.id]
            with pytest.raises(ConflictError):
                await twin.cancel()
            written = await job.output(tmp_path / "out")
            assert [p.read_bytes() for p in written] == [b"42"]
            assert [e.event for e in await job.events()][-1] == "Done"
            assert "run.sh" in await job.jdl("submitted")
            assert (await client.job(para.id)).kind == "parametric"
            assert isinstance((await client.list_match('Executable = "/bin/true";')).matching, list)
            assert isinstance(await client.pilots(), list)
            with pytest.raises(JDLRejected):
                await client.submit("Executable = ;")

    asyncio.run(scenario())
