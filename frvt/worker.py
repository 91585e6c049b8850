"""Worker processes the harness can lose: every call of an implementation runs in one.

A worker is a fresh process (``spawn``: nothing of the harness's state is inherited) that builds
the implementation from an :class:`frvt.contract.ImplementationSpec`, calls ``initialize`` on the
read-only config folder, and then serves requests one at a time over a pipe. The parent
(:class:`WorkerPool`) gives each call a deadline (``call_timeout``) and watches the worker's
resident memory (``memory_limit``; the worker also caps its own address space at twice the limit
with ``RLIMIT_AS``, so that a runaway allocation fails inside it rather than exhausting the
machine). When a worker dies (a signal such as SIGSEGV or SIGABRT, ``os._exit``, a C++ exception
that terminates it), overruns its deadline or its memory, the call gets a :class:`CallFailure`
naming the cause, the worker is replaced by a fresh one (which initializes again) and the run
goes on. A worker also dies with its parent (``PR_SET_PDEATHSIG``), so killing the harness
leaves no orphan behind.

The harness never sets thread-count environment variables for the implementation: a worker
inherits the environment the harness was started with.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.connection as mpc
import os
import signal
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from frvt.contract import ImplementationSpec, ReturnCode

MiB = 1 << 20
#: The default per-call deadline is this many times the per-template budget.
CALL_TIMEOUT_BUDGETS = 30.0
#: ``initialize`` may take this many call deadlines (it loads models).
INIT_TIMEOUT_CALLS = 10.0
DEFAULT_MEMORY_LIMIT_MIB = 4096
_POLL_S = 0.02


@dataclass(frozen=True)
class WorkerLimits:
    """Deadlines in seconds and the memory limit in MiB of resident memory per worker."""

    call_timeout_s: float = 30.0
    init_timeout_s: float = 300.0
    memory_limit_mib: int = DEFAULT_MEMORY_LIMIT_MIB

    @classmethod
    def for_budget(
        cls, budget_ms: float, call_timeout_s: float | None = None, memory_limit_mib: int | None = None
    ) -> "WorkerLimits":
        call = call_timeout_s if call_timeout_s is not None else CALL_TIMEOUT_BUDGETS * budget_ms / 1e3
        return cls(call, max(60.0, INIT_TIMEOUT_CALLS * call), memory_limit_mib or DEFAULT_MEMORY_LIMIT_MIB)


@dataclass(frozen=True)
class CallFailure:
    """A call that did not return: ``cause`` is ``crash``, ``timeout`` or ``memory``."""

    cause: str
    detail: str
    code: int = int(ReturnCode.UnknownError)

    def to_json(self) -> dict:
        return {"cause": self.cause, "detail": self.detail}


# ---------------------------------------------------------------------------------------------
# The worker's side.


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _limit_address_space(memory_limit_mib: int) -> None:
    import resource

    limit = int(memory_limit_mib) * 2 * MiB
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ValueError, OSError):
        pass


def _thread_ids() -> list[int]:
    """This process's thread ids (Linux); empty where /proc is not there."""
    try:
        return sorted(int(t) for t in os.listdir("/proc/self/task"))
    except OSError:
        return []


def exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _worker_main(
    conn, spec: ImplementationSpec, config_dir: str, memory_limit_mib: int, setup: Callable[[], None] | None
) -> None:
    """Build, initialize, then serve ``(operation, payload)`` requests until the pipe closes."""
    _die_with_parent()
    _limit_address_space(memory_limit_mib)
    from frvt import driver
    from frvt.contract import load_implementation

    harness_threads = _thread_ids()  # numpy's and OpenCV's pools, started by the harness's own imports
    if setup is not None:
        setup()
    t0 = time.perf_counter()
    try:
        impl = load_implementation(spec)
    except BaseException as exc:  # the factory itself failed
        conn.send(
            {
                "code": int(ReturnCode.UnknownError),
                "info": "",
                "error": f"cannot create the implementation: {exception_text(exc)}",
            }
        )
        return
    try:
        status = impl.initialize(config_dir)
        reply = {"code": int(status.code), "info": str(status.info), "error": None}
    except BaseException as exc:
        reply = {
            "code": int(ReturnCode.UnknownError),
            "info": "",
            "error": f"initialize raised {exception_text(exc)}",
            "memory_error": isinstance(exc, MemoryError),
        }
    reply["elapsed_s"] = time.perf_counter() - t0
    reply["attributes"] = driver.implementation_attributes(impl)
    reply["harness_threads"] = harness_threads
    conn.send(reply)
    handlers = driver.REQUEST_HANDLERS
    while True:
        try:
            operation, payload = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        conn.send(handlers[operation](impl, payload))


# ---------------------------------------------------------------------------------------------
# The parent's side.


def describe_exit(exitcode: int | None) -> str:
    """``-11`` -> ``killed by SIGSEGV``; ``3`` -> ``exited with status 3``."""
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}"
    return f"exited with status {exitcode} (os._exit, exit() or a fatal error)"


@dataclass
class InitResult:
    code: int
    info: str
    error: str | None
    elapsed_s: float
    attributes: dict = field(default_factory=dict)
    failure: CallFailure | None = None


class Worker:
    """One worker process and its pipe."""

    def __init__(
        self, spec: ImplementationSpec, config_dir: str, limits: WorkerLimits, setup: Callable[[], None] | None = None
    ) -> None:
        self.spec, self.config_dir, self.limits, self.setup = spec, config_dir, limits, setup
        self.proc = None
        self.conn = None
        self.task: Any = None
        self.deadline = 0.0
        self.started_call = 0.0
        #: threads the worker had before it loaded the implementation (the harness's own imports)
        self.harness_threads: frozenset[int] = frozenset()

    def start(self) -> InitResult:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(
            target=_worker_main,
            args=(child, self.spec, self.config_dir, self.limits.memory_limit_mib, self.setup),
            daemon=True,
            name="frvt-worker",
        )
        self.proc.start()
        child.close()
        deadline = time.monotonic() + self.limits.init_timeout_s
        while True:
            if self.conn.poll(_POLL_S):
                try:
                    reply = self.conn.recv()
                    self.harness_threads = frozenset(reply.get("harness_threads", ()))
                    return InitResult(
                        reply["code"],
                        reply["info"],
                        reply["error"],
                        reply.get("elapsed_s", 0.0),
                        reply.get("attributes", {}),
                    )
                except (EOFError, OSError):
                    self.proc.join(5)  # the pipe closed: the worker is gone or going
            failure = self._check(deadline, "initialize")
            if failure is not None:
                return InitResult(
                    int(ReturnCode.UnknownError),
                    "",
                    f"initialize did not return: {failure.detail}",
                    0.0,
                    failure=failure,
                )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def rss_mib(self) -> float:
        import psutil

        try:
            return psutil.Process(self.proc.pid).memory_info().rss / MiB
        except (psutil.Error, ValueError):
            return 0.0

    def _check(self, deadline: float, what: str) -> CallFailure | None:
        """A failure if the worker died, overran ``deadline`` or its memory; else None."""
        if not self.proc.is_alive():  # callers read any answer it sent before dying first
            self.proc.join(1)
            return CallFailure("crash", f"worker {describe_exit(self.proc.exitcode)} during {what}")
        if time.monotonic() > deadline:
            self.kill()
            limit = self.limits.init_timeout_s if what == "initialize" else self.limits.call_timeout_s
            return CallFailure("timeout", f"{what} still running after {limit:g} s: worker killed")
        rss = self.rss_mib()
        if rss > self.limits.memory_limit_mib:
            self.kill()
            return CallFailure(
                "memory",
                f"worker used {rss:.0f} MiB of resident memory during {what}, over the "
                f"limit of {self.limits.memory_limit_mib} MiB: killed",
                int(ReturnCode.MemoryError),
            )
        return None

    def submit(self, task: Any, operation: str, payload: Any) -> None:
        self.task = task
        self.started_call = time.monotonic()
        self.deadline = self.started_call + self.limits.call_timeout_s
        self.conn.send((operation, payload))

    def kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)

    def stop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
        if self.proc is not None:
            self.proc.join(2)
            self.kill()


@dataclass
class PhaseStats:
    """What the pool saw during one phase: peak resident memory, replaced workers."""

    peak_rss_mib: float = 0.0
    worker_restarts: int = 0


class WorkerPool:
    """Up to ``size`` workers serving calls; lost workers are replaced.

    ``on_tick(pool)`` is called between polls (the thread sampler uses it).
    """

    def __init__(
        self,
        spec: ImplementationSpec,
        config_dir: str,
        limits: WorkerLimits,
        setup: Callable[[], None] | None = None,
        say: Callable[[str], None] = lambda s: None,
    ) -> None:
        self.spec, self.config_dir, self.limits, self.setup, self.say = spec, config_dir, limits, setup, say
        self.workers: list[Worker] = []
        self.init_results: list[InitResult] = []
        self.broken: str | None = None

    def _new_worker(self) -> Worker | None:
        w = Worker(self.spec, self.config_dir, self.limits, self.setup)
        result = w.start()
        self.init_results.append(result)
        if result.failure is not None or result.error or result.code != int(ReturnCode.Success):
            w.kill()
            self.broken = result.error or f"initialize returned {result.code}: {result.info}"
            return None
        return w

    def ensure(self, n: int) -> InitResult | None:
        """Start workers until ``n`` are alive; the first failing initialize is returned."""
        while len(self.workers) < n:
            w = self._new_worker()
            if w is None:
                return self.init_results[-1]
            self.workers.append(w)
        return None

    def run(
        self,
        tasks: Iterable[tuple[Any, str, Any]],
        n_workers: int,
        on_result: Callable[[Any, Any], None],
        on_tick: Callable[["WorkerPool"], None] | None = None,
    ) -> PhaseStats:
        """Run ``(task, operation, payload)`` items on ``n_workers`` workers; ``on_result(task,
        reply or CallFailure)`` is called in completion order, once per task."""
        stats = PhaseStats()
        pending = deque(tasks)
        if not pending:
            return stats
        failure = self.ensure(n_workers)
        active = self.workers[:n_workers]
        if not active:
            while pending:
                task, _, _ = pending.popleft()
                on_result(task, CallFailure("crash", f"no worker could start: {self.broken or failure}"))
            return stats
        busy: list[Worker] = []
        idle = list(active)
        while pending or busy:
            while idle and pending:
                w = idle.pop()
                task, operation, payload = pending.popleft()
                w.submit(task, operation, payload)
                busy.append(w)
            waitables = [w.conn for w in busy] + [w.proc.sentinel for w in busy]
            mpc.wait(waitables, timeout=_POLL_S)
            for w in list(busy):
                reply = None
                if w.conn.poll():
                    try:
                        reply = w.conn.recv()
                    except (EOFError, OSError):
                        reply = None
                        w.proc.join(5)  # the pipe closed: the worker is gone or going
                if reply is None:
                    fail = w._check(w.deadline, "the call")
                    if fail is None:
                        stats.peak_rss_mib = max(stats.peak_rss_mib, w.rss_mib())
                        continue
                    reply = fail
                else:
                    stats.peak_rss_mib = max(stats.peak_rss_mib, w.rss_mib())
                busy.remove(w)
                task = w.task
                lost = isinstance(reply, CallFailure) or bool(isinstance(reply, dict) and reply.get("memory_error"))
                if lost:
                    w.kill()
                    w.stop()
                    index = self.workers.index(w)
                    self.say(
                        f"worker lost on {task!r}: {reply.detail if isinstance(reply, CallFailure) else 'MemoryError'}; "
                        "starting a fresh one"
                    )
                    replacement = self._new_worker() if self.broken is None else None
                    stats.worker_restarts += 1
                    if replacement is not None:
                        self.workers[index] = replacement
                        idle.append(replacement)
                    else:
                        self.workers.pop(index)
                else:
                    idle.append(w)
                on_result(task, reply)
            if on_tick is not None:
                on_tick(self)
            if not busy and not idle and pending:
                while pending:
                    task, _, _ = pending.popleft()
                    on_result(
                        task, CallFailure("crash", f"no worker left: a replacement could not start ({self.broken})")
                    )
        return stats

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        self.workers = []
