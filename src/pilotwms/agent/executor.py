"""Runs one job attempt in its own work directory, in its own thread.

Steps: stage in, prologue, executable, epilogue, stage out, remove the work directory; each
process step in its own session and process group (``start_new_session=True``). The thread
waits for its step without blocking on it: on Linux 5.3 and later it sleeps in ``poll`` on a
pidfd of the process (so it wakes the moment the process ends, and a ``/bin/true`` job costs
what spawning it costs) and on a pipe that :meth:`JobRunner.stop` writes to, waking at least
every 0.2 s; elsewhere it polls ``os.wait4`` with ``WNOHANG``, first every millisecond and
backing off to 0.2 s. Meanwhile it enforces:

* the wall-clock limit (``max_wall_time_s``, counted from the start of the prologue): SIGTERM to
  the session, SIGKILL after ``cancel_grace``; reported ``killed_walltime``;
* the memory limit (``max_memory_mb``) by summing the RSS of the session's processes from
  ``/proc`` twice a second; over the limit, the session is SIGKILLed and reported
  ``killed_memory``. RLIMIT_AS was rejected: it limits address space per process, not memory per
  job, so it kills JVMs, Go and CUDA programs that reserve large virtual ranges they never touch,
  while a job forking many children each under the limit escapes it; and setting it needs
  ``preexec_fn``, which is unsafe in a threaded program. Polling is off by at most one period of
  growth, which is what a batch system's own enforcement does too;
* cancel (server command) and drain (pilot shutting down): SIGTERM, then SIGKILL after the
  grace period; reported ``cancelled`` or ``drained``.

The outcome is a :class:`JobResult`; the runner never raises out of its thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import logging
import os
import queue
import re
import select
import shutil
import signal
import ssl
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Mapping, Optional, Union

from . import processes
from .jobspec import JobSpec, Script, safe_relative_name
from .staging import BlobCache, OutputSink, StagingError, stage_in, stage_out

log = logging.getLogger(__name__)

DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
KILLED_WALLTIME = "killed_walltime"
KILLED_MEMORY = "killed_memory"
SETUP_FAILED = "setup_failed"
DRAINED = "drained"
REFUSED = "refused"
STATUSES = (DONE, FAILED, CANCELLED, KILLED_WALLTIME, KILLED_MEMORY, SETUP_FAILED, DRAINED, REFUSED)
"""Every final status of an attempt; the protocol document says what the server does with each."""

_STAGE_OUT = (DONE, FAILED, KILLED_WALLTIME, KILLED_MEMORY)
_SAMPLE_PERIOD = 0.5
_MAX_POLL = 0.2
_TAIL_BYTES = 8192
_SWEEP_AFTER = 0.05


@dataclasses.dataclass
class JobResult:
    """How an attempt ended; the fields of a ``finished`` report."""

    job_id: str
    attempt: int
    status: str
    reason: str = ""
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    cpu_s: float = 0.0
    max_rss_mb: float = 0.0
    wall_s: float = 0.0
    payload_started: bool = False
    missing_outputs: List[str] = dataclasses.field(default_factory=list)

    def report(self) -> Dict[str, Any]:
        """The result as the body fields of a ``finished`` report."""
        return {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "type": "finished",
            "status": self.status,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "cpu_s": round(self.cpu_s, 3),
            "max_rss_mb": round(self.max_rss_mb, 1),
            "wall_s": round(self.wall_s, 3),
            "payload_started": self.payload_started,
            "missing_outputs": list(self.missing_outputs),
        }


class _Stop(Exception):
    """Ends the step sequence early with a final status."""

    def __init__(self, status: str, reason: str, exit_code: Optional[int] = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.exit_code = exit_code


@dataclasses.dataclass
class _Step:
    """How one process step ended."""

    returncode: Optional[int]
    killed: Optional["tuple[str, str]"]


@dataclasses.dataclass
class ExecutorContext:
    """What every job of one pilot shares."""

    jobs_root: Path
    cache: BlobCache
    sink: OutputSink
    base_env: Mapping[str, str]
    cancel_grace: float = 10.0
    url_context: Optional[ssl.SSLContext] = None
    proc: Path = Path("/proc")
    keep_work_dirs: bool = False
    table: Optional[processes.ProcessTable] = None
    work_dirs: Optional["WorkDirs"] = None
    threads: Optional["Threads"] = None

    def __post_init__(self) -> None:
        if self.table is None:
            self.table = processes.ProcessTable(self.proc)
        if self.work_dirs is None:
            self.work_dirs = WorkDirs(self.jobs_root)
        if self.threads is None:
            self.threads = Threads()


class Threads:
    """Daemon threads for jobs (and the pilot's server calls), reused from one task to the next.

    ``Thread.start`` returns only once the new thread has run, which needs the interpreter
    lock; on a pilot streaming short jobs other threads hold it, so starting a thread per job
    cost the main loop milliseconds per job, time in which no job was started. A task handed
    to an idle thread here costs a queue put. Threads are made when none is idle and end when
    more than ``max_idle`` would wait.
    """

    def __init__(self, max_idle: int = 32):
        self.max_idle = max_idle
        self._tasks: "queue.SimpleQueue[tuple[Callable[[], None], str]]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def run(self, task: Callable[[], None], name: str) -> None:
        """Run ``task`` in a thread (named ``name`` while it runs); returns at once."""
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1  # that thread is taken by this task
        self._tasks.put((task, name))
        if spawn:
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            task, me.name = self._tasks.get()
            try:
                task()
            except Exception:  # a task must not end the thread that others wait for
                log.exception("task %s failed", me.name)
            with self._lock:
                if self._idle >= self.max_idle:
                    return
                self._idle += 1
            me.name = "idle"


def job_environment(
    spec: JobSpec, base_env: Mapping[str, str], work_dir: Path, cores: int
) -> Dict[str, str]:
    """The job's environment: the pilot's, minus its own ``PILOTWMS_*`` settings (the token
    among them), plus the job's ``Environment`` and the variables that tell a job where it is."""
    env = {k: v for k, v in base_env.items() if not k.startswith("PILOTWMS_")}
    env.update(spec.environment)
    env.update(
        {
            "PILOTWMS_JOB_ID": spec.job_id,
            "PILOTWMS_ATTEMPT": str(spec.attempt),
            "PILOTWMS_WORKDIR": str(work_dir),
            "PILOTWMS_CORES": str(cores),
        }
    )
    if "OMP_NUM_THREADS" not in spec.environment:
        env["OMP_NUM_THREADS"] = str(cores)  # as HTCondor does: threads follow the cores given
    return env


def resolve_program(path: str, work_dir: Path, env: Mapping[str, str]) -> str:
    """The file to execute: absolute paths as they are; a sandbox file (made executable);
    otherwise a command found on the job's PATH."""
    if os.path.isabs(path):
        if not os.path.exists(path):
            raise _Stop(SETUP_FAILED, f"{path} does not exist on this node")
        return path
    why = safe_relative_name(path)
    if why:
        raise _Stop(SETUP_FAILED, f"executable {path!r}: {why}")
    candidate = work_dir / path
    if candidate.is_file():
        mode = candidate.stat().st_mode
        candidate.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return str(candidate)
    found = shutil.which(path, path=env.get("PATH"))
    if found is None:
        raise _Stop(SETUP_FAILED, f"{path!r} is neither in the sandbox nor on PATH")
    return found


class WorkDirs:
    """The work directories of a pilot's jobs, each job in an empty one of its own.

    Creating and removing a directory costs more than spawning ``/bin/true`` (both are
    journalled metadata writes), so a job that leaves its directory empty, as most short jobs
    do, hands it on: it is moved aside (to ``spare``, next to ``root``) and renamed to the next
    job's directory, which is one cheap rename each way. Only empty directories with their
    original permissions are handed on, and no two running jobs share a directory. A process
    of a finished short job that left its session (``setsid``) keeps its working directory and
    so would see the next job's; jobs of one pilot run as the same user, so they are no security
    boundary for each other in any case.
    """

    def __init__(self, root: Path, max_spare: int = 16):
        self.root = Path(root)
        self.spare = self.root.parent / f".{self.root.name}-spare"
        self.max_spare = max_spare
        self._lock = threading.Lock()
        self._free: List[Path] = []
        self._count = 0
        self._mode: Optional[int] = None

    def make(self, path: Path) -> None:
        """Create the empty directory ``path`` (FileExistsError if it exists)."""
        with self._lock:
            reused = self._free.pop() if self._free else None
        if reused is not None:
            if os.path.lexists(path):
                self._give_back(reused)
                raise FileExistsError(errno.EEXIST, "work directory exists", str(path))
            try:
                os.rename(reused, path)
                return
            except OSError:
                remove_work_dir(reused)
        path.mkdir(parents=True, exist_ok=False)
        if self._mode is None:
            self._mode = stat.S_IMODE(os.lstat(path).st_mode)

    def done(self, path: Path) -> None:
        """A job ended: keep its directory for the next job if it is empty, else remove it."""
        try:
            info = os.lstat(path)
            reusable = (
                stat.S_ISDIR(info.st_mode)
                and stat.S_IMODE(info.st_mode) == self._mode
                and not os.listdir(path)
            )
        except OSError:
            reusable = False
        with self._lock:
            reusable = reusable and len(self._free) < self.max_spare
            if reusable:
                self._count += 1
                target = self.spare / str(self._count)
        if reusable:
            try:
                try:
                    os.rename(path, target)
                except FileNotFoundError:  # the first one: make the spare folder
                    self.spare.mkdir(exist_ok=True)
                    os.rename(path, target)
            except OSError:
                remove_work_dir(path)
                return
            self._give_back(target)
        else:
            remove_work_dir(path)

    def _give_back(self, path: Path) -> None:
        with self._lock:
            self._free.append(path)

    def close(self) -> None:
        """Remove the spare directories."""
        with self._lock:
            self._free = []
        shutil.rmtree(self.spare, ignore_errors=True)


def remove_work_dir(path: Path) -> None:
    """Remove a job's work directory. Most short jobs leave it empty, and one ``rmdir`` is
    several times cheaper than ``shutil.rmtree``'s descent (which opens and checks the
    directory first); anything else goes to ``rmtree``."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


_ODD_CHARACTERS = re.compile(r"[^A-Za-z0-9_.-]")


def _dir_name(spec: JobSpec) -> str:
    """A readable, unique directory name: ids that differ only in odd characters still differ."""
    readable = _ODD_CHARACTERS.sub("_", spec.job_id)[:80]
    if readable != spec.job_id:
        readable += "-" + hashlib.sha256(spec.job_id.encode()).hexdigest()[:10]
    return f"{readable}.{spec.attempt}"


class _ExitWaiter:
    """Sleeps until a child process ends or :meth:`JobRunner.stop` writes to the wake pipe:
    a pidfd (``os.pidfd_open``, Linux 5.3+) and a pipe in one ``poll``.

    One per job thread, used by each job that thread runs in turn: only the pidfd is new for
    each process. A wake-up byte left over from an earlier job's stop costs one spurious
    wake-up, which the step loop absorbs.
    """

    def __init__(self) -> None:
        self.wake_read, self.wake_fd = os.pipe()
        os.set_blocking(self.wake_fd, False)  # a full pipe already wakes: never wait to write
        self.poller = select.poll()
        self.poller.register(self.wake_read, select.POLLIN)
        self.pidfd: Optional[int] = None

    @classmethod
    def create(cls) -> "Optional[_ExitWaiter]":
        """A waiter, or None where pidfds are not available (the step then polls)."""
        if getattr(os, "pidfd_open", None) is None:
            return None
        try:
            return cls()
        except OSError:
            return None

    def watch(self, pid: int) -> bool:
        """Wake when child ``pid`` ends; False if no pidfd can be had for it."""
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return False
        self.pidfd = pidfd
        self.poller.register(pidfd, select.POLLIN)
        return True

    def unwatch(self) -> None:
        """Stop watching the process (its pidfd is closed)."""
        if self.pidfd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.poller.unregister(self.pidfd)
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = None

    def wait(self, timeout: float) -> None:
        """Return when the process ended, a stop was asked for, or after ``timeout`` s."""
        for fd, _ in self.poller.poll(max(0, int(timeout * 1000) + 1)):
            if fd == self.wake_read:
                with contextlib.suppress(OSError):
                    os.read(self.wake_read, 512)

    def close(self) -> None:
        self.unwatch()
        for fd in (self.wake_read, self.wake_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class JobRunner:
    """One attempt of one job, run in a daemon thread.

    ``on_event(kind, runner)`` is called from the job's thread with ``"started"`` (the job was
    received and set-up begins), ``"payload_started"`` (the executable was started: from now on a
    retry is a deep one) and ``"finished"`` (``runner.result`` is set; the work directory is
    removed right after).

    ``on_done(runner)``, called in the same thread once the work directory is gone, may hand
    back the next job for the slot this one freed: it then runs in this thread at once. A pilot
    streaming short jobs so starts each one without waking any other thread, where a hand-over
    to the main loop and then to a pool thread cost several context switches per job.
    """

    def __init__(
        self,
        spec: JobSpec,
        context: ExecutorContext,
        cores: int,
        on_event: Callable[[str, "JobRunner"], None],
        on_done: "Optional[Callable[[JobRunner], Optional[JobRunner]]]" = None,
    ):
        self.spec = spec
        self.context = context
        self.cores = cores
        self.on_event = on_event
        self.on_done = on_done
        self.work_dir = context.jobs_root / _dir_name(spec)
        self.result: Optional[JobResult] = None
        self.payload_started = False
        self.cpu_s = 0.0
        self.rss_mb = 0.0
        self.max_rss_mb = 0.0
        self._stop_request: Optional["tuple[str, str]"] = None
        self._wake = threading.Event()
        # The write end of the running step's wake-up pipe (pidfd waits); under the lock, so
        # that a stop never writes to a descriptor number the step already closed.
        self._wake_fd: Optional[int] = None
        self._wake_lock = threading.Lock()
        self._waiter: Optional[_ExitWaiter] = None  # the job thread's (see _chain)
        self._devnull: int = subprocess.DEVNULL  # the job thread's, where it has one
        self._done = threading.Event()
        self._started_at = time.monotonic()
        self._deadline: Optional[float] = None
        self._stdout_path: Optional[Path] = None

    def start(self) -> None:
        """Start the job's thread."""
        assert self.context.threads is not None
        self.context.threads.run(self._chain, f"job-{self.spec.key}")

    def _chain(self) -> None:
        """Run this job, then each successor ``on_done`` hands back, in this thread."""
        waiter = _ExitWaiter.create()
        # One /dev/null for the streams a job leaves unset, rather than Popen opening and
        # closing its own for every process (a tenth of what spawning /bin/true costs).
        try:
            devnull: Optional[int] = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            devnull = None
        runner: Optional[JobRunner] = self
        try:
            while runner is not None:
                threading.current_thread().name = f"job-{runner.spec.key}"
                runner._waiter = waiter
                if devnull is not None:
                    runner._devnull = devnull
                runner._main()
                ended, runner = runner, runner._successor()
                ended._done.set()  # after on_done: whoever waits sees the job's slot freed
        finally:
            if waiter is not None:
                waiter.close()
            if devnull is not None:
                os.close(devnull)

    def _successor(self) -> "Optional[JobRunner]":
        if self.on_done is None:
            return None
        try:
            return self.on_done(self)
        except Exception:  # the thread must survive a failing callback
            log.exception("job %s: done callback failed", self.spec.key)
            return None

    def stop(self, status: str, reason: str) -> None:
        """Ask the job to end with ``status`` (``cancelled`` or ``drained``); returns at once."""
        if self._stop_request is None:
            self._stop_request = (status, reason)
        self._wake.set()
        with self._wake_lock:
            if self._wake_fd is not None:
                with contextlib.suppress(OSError):
                    os.write(self._wake_fd, b"\0")

    def cancel(self, reason: str = "cancelled by the server") -> None:
        """Cancel: SIGTERM to the job's processes, SIGKILL after the grace period."""
        self.stop(CANCELLED, reason)

    def drain(self, reason: str) -> None:
        """Kill for a pilot shutdown; reported ``drained`` so the server retries it shallowly."""
        self.stop(DRAINED, reason)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until the job has ended, its work directory is gone and ``on_done`` has
        returned; True if so."""
        return self._done.wait(timeout)

    @property
    def finished(self) -> bool:
        """True once the result is set."""
        return self._done.is_set()

    def stdout_tail(self, max_bytes: int = _TAIL_BYTES) -> str:
        """The last ``max_bytes`` of the job's StdOutput file so far (perusal/peek)."""
        path = self._stdout_path
        if path is None:
            return ""
        try:
            with open(path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - max_bytes))
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _main(self) -> None:
        spec = self.spec
        result = JobResult(job_id=spec.job_id, attempt=spec.attempt, status=FAILED)
        try:
            self.on_event("started", self)
            result = self._run()
        except Exception as exc:  # the thread must always produce a result
            log.exception("job %s: unexpected error", spec.key)
            result = JobResult(spec.job_id, spec.attempt, SETUP_FAILED, f"agent error: {exc}")
        finally:
            result.wall_s = time.monotonic() - self._started_at
            result.cpu_s = max(result.cpu_s, self.cpu_s)
            result.max_rss_mb = max(result.max_rss_mb, self.max_rss_mb)
            result.payload_started = self.payload_started
            self.result = result
            try:
                self.on_event("finished", self)
            except Exception:
                log.exception("job %s: finished callback failed", spec.key)
            # Removed after the report, off the path to the next job (removing a directory can
            # take milliseconds); wait() returns only once it is gone.
            if not self.context.keep_work_dirs:
                assert self.context.work_dirs is not None
                self.context.work_dirs.done(self.work_dir)

    def _check_stop(self) -> None:
        if self._stop_request is not None:
            raise _Stop(*self._stop_request)

    def _run(self) -> JobResult:
        spec = self.spec
        result = JobResult(spec.job_id, spec.attempt, DONE)
        try:
            assert self.context.work_dirs is not None
            self.context.work_dirs.make(self.work_dir)
            try:
                stage_in(
                    spec.input_sandbox,
                    self.work_dir,
                    self.context.cache,
                    self.context.url_context,
                )
            except StagingError as exc:
                raise _Stop(SETUP_FAILED, str(exc)) from None
            self._check_stop()
            if spec.max_wall_time_s:
                self._deadline = time.monotonic() + spec.max_wall_time_s
            env = job_environment(spec, self.context.base_env, self.work_dir, self.cores)
            if spec.prologue is not None:
                code = self._script(spec.prologue, env, "prologue")
                if code != 0:
                    raise _Stop(SETUP_FAILED, f"prologue exited with {code}")
            self._check_stop()
            result.exit_code, result.signal = self._payload(env)
            if result.signal is not None:
                result.status = FAILED
                result.reason = f"killed by signal {result.signal}"
            elif result.exit_code != 0:
                result.status = FAILED
                result.reason = f"exit code {result.exit_code}"
            if spec.epilogue is not None:
                try:
                    code = self._script(spec.epilogue, env, "epilogue")
                except _Stop as stop:
                    if stop.status != SETUP_FAILED:
                        raise
                    code, stop.reason = None, f"epilogue: {stop.reason}"
                    result.reason = stop.reason
                if code != 0 and result.status == DONE:
                    result.status = FAILED
                    result.reason = result.reason or f"epilogue exited with {code}"
        except _Stop as stop:
            result.status, result.reason = stop.status, stop.reason
            if stop.exit_code is not None:
                result.exit_code = stop.exit_code
        except OSError as exc:
            result.status, result.reason = SETUP_FAILED, f"cannot run the job: {exc}"
        if result.status in _STAGE_OUT and spec.output_sandbox:
            outcome = stage_out(spec, self.work_dir, self.context.sink, self.context.url_context)
            result.missing_outputs = outcome.missing
            if outcome.missing and not result.reason:
                result.reason = "missing outputs: " + ", ".join(
                    f"{name} ({outcome.errors.get(name, '')})" for name in outcome.missing
                )
        return result

    def _script(self, script: Script, env: Mapping[str, str], what: str) -> Optional[int]:
        program = resolve_program(script.path, self.work_dir, env)
        step = self._step([program, *script.arguments], env, stdin=self._devnull)
        if step.killed:
            raise _Stop(*step.killed)
        return step.returncode

    def _open_streams(
        self, stack: contextlib.ExitStack
    ) -> "tuple[Union[int, IO[bytes]], Optional[IO[bytes]], Optional[IO[bytes]]]":
        # Each file is registered with the caller's ExitStack, which closes it after the step.
        spec, work = self.spec, self.work_dir
        stdin: Union[int, IO[bytes]]
        if spec.stdin:
            if not (work / spec.stdin).is_file():
                raise _Stop(SETUP_FAILED, f"StdInput {spec.stdin!r} is not in the sandbox")
            stdin = stack.enter_context(open(work / spec.stdin, "rb"))  # noqa: SIM115
        else:
            stdin = self._devnull  # no Python file object: nothing to buffer or close
        stdout = stderr = None
        if spec.stdout:
            (work / spec.stdout).parent.mkdir(parents=True, exist_ok=True)
            stdout = stack.enter_context(open(work / spec.stdout, "wb"))  # noqa: SIM115
            self._stdout_path = work / spec.stdout
        if spec.stderr:
            if spec.stderr == spec.stdout:
                stderr = stdout
            else:
                (work / spec.stderr).parent.mkdir(parents=True, exist_ok=True)
                stderr = stack.enter_context(open(work / spec.stderr, "wb"))  # noqa: SIM115
        return stdin, stdout, stderr

    def _payload(self, env: Mapping[str, str]) -> "tuple[Optional[int], Optional[int]]":
        program = resolve_program(self.spec.executable, self.work_dir, env)
        with contextlib.ExitStack() as stack:
            stdin, stdout, stderr = self._open_streams(stack)
            step = self._step(
                [program, *self.spec.arguments],
                env,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                payload=True,
            )
        if step.killed:
            code = step.returncode
            raise _Stop(*step.killed, exit_code=code if code is not None and code >= 0 else None)
        code = step.returncode
        if code is not None and code < 0:
            return None, -code
        return code, None

    def _step(
        self,
        argv: List[str],
        env: Mapping[str, str],
        *,
        stdin: Union[int, IO[bytes]],
        stdout: Optional[IO[bytes]] = None,
        stderr: Optional[IO[bytes]] = None,
        payload: bool = False,
    ) -> _Step:
        """Run one process step to its end, enforcing limits and stop requests."""
        options: Dict[str, Any] = {
            "cwd": str(self.work_dir),
            "env": env,
            "stdin": stdin,
            "stdout": stdout if stdout is not None else self._devnull,
            "stderr": stderr if stderr is not None else self._devnull,
            "start_new_session": True,
            "close_fds": True,
        }
        try:
            proc = subprocess.Popen(argv, **options)
        except OSError as exc:
            if exc.errno != errno.ENOEXEC:
                raise
            # A script without a "#!" line: run it with the shell, as a login shell would.
            proc = subprocess.Popen(["/bin/sh", *argv], **options)
        session = proc.pid
        started = time.monotonic()
        killed: Optional["tuple[str, str]"] = None
        term_at: Optional[float] = None
        next_sample = time.monotonic() + 0.05
        delay = 0.001
        limit = self.spec.max_memory_mb
        waiter: Optional[_ExitWaiter] = None
        try:  # from here on, whatever fails, the process is reaped and the waiter released
            if self._waiter is not None and self._waiter.watch(proc.pid):
                waiter = self._waiter
                with self._wake_lock:
                    self._wake_fd = waiter.wake_fd
            if payload:
                self.payload_started = True
                self.on_event("payload_started", self)
            while True:
                pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    self.cpu_s = max(self.cpu_s, rusage.ru_utime + rusage.ru_stime)
                    self.max_rss_mb = max(self.max_rss_mb, rusage.ru_maxrss / 1024.0)
                    break
                now = time.monotonic()
                if now >= next_sample:
                    next_sample = now + _SAMPLE_PERIOD
                    table = self.context.table or processes.ProcessTable(self.context.proc)
                    used = processes.usage(table.members(session))
                    self.rss_mb = used.rss_mb
                    self.cpu_s = max(self.cpu_s, used.cpu_s)
                    self.max_rss_mb = max(self.max_rss_mb, used.rss_mb)
                    if killed is None and limit and used.rss_mb > limit:
                        killed = (
                            KILLED_MEMORY,
                            f"memory {used.rss_mb:.0f} MiB over the limit of {limit} MiB",
                        )
                        processes.signal_session(session, signal.SIGKILL, self.context.proc)
                if killed is None and self._deadline is not None and now >= self._deadline:
                    killed = (
                        KILLED_WALLTIME,
                        f"wall-clock limit of {self.spec.max_wall_time_s:g} s exceeded",
                    )
                if killed is None and self._stop_request is not None:
                    killed = self._stop_request
                if killed is not None and term_at is None:
                    term_at = now
                    processes.signal_session(session, signal.SIGTERM, self.context.proc)
                if term_at is not None and now - term_at >= self.context.cancel_grace:
                    processes.signal_session(session, signal.SIGKILL, self.context.proc)
                if waiter is not None:
                    waiter.wait(min(_MAX_POLL, max(0.0, next_sample - now)))
                    continue
                # The stop request itself persists, so clearing here loses nothing and keeps
                # the grace period from turning into a busy loop.
                self._wake.wait(delay)
                self._wake.clear()
                delay = min(_MAX_POLL, delay * 2)
        finally:
            if waiter is not None:
                with self._wake_lock:
                    self._wake_fd = None
                waiter.unwatch()
            if proc.returncode is None:
                processes.signal_session(session, signal.SIGKILL, self.context.proc)
                proc.wait()
            # Stragglers: the process group always; the whole session (a /proc scan, which
            # costs milliseconds) unless the step was a short one that was never killed, so
            # that a /bin/true job costs what spawning it costs.
            if killed is not None or time.monotonic() - started >= _SWEEP_AFTER:
                processes.kill_session(session, self.context.proc)
            else:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(session, signal.SIGKILL)
            self.rss_mb = 0.0
        return _Step(returncode=proc.returncode, killed=killed)
