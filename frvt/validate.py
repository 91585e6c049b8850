"""``frvt validate``: drive an implementation through NIST's 1:1 validation run and check it.

The run, phase by phase as NIST's ``run_testdriver.sh`` does it (lists from ``--input-dir``):

1. Parse every list first; a malformed line stops the run before any work (ListFormatError).
2. The config folder is moved out of the way and the implementation gets a read-only copy under
   a random name (:mod:`frvt.config_folder`); it is put back at the end, whatever ends the run.
   A folder the implementation builds for itself (the default implementation's compiled models)
   is first staged into ``<output>/config``, the package's ``./config``.
3. ``enroll_single``: ``enroll.txt`` on one worker while its threads are sampled; per-call
   create-template latency comes from here (warm-ups excluded).
4. ``enroll_multiface``: ``enroll_multiface.txt`` (several images of one subject per line), one worker.
5. ``enroll``, ``verif``, ``match``: ``enroll.txt``, ``verif.txt``, ``match.txt`` on N workers.
6. ``verif_multiperson``: ``verif_multiperson.txt`` through the multi-person call, one worker;
   ``match_multiperson``: each of its templates ``<id>_<i>`` against the enrolment template ``<id>``.
7. NIST's logs and templates in ``<output>/validation/``, ``summary.json``, and the package.

Every call runs in a worker process that can be lost (:mod:`frvt.worker`); each phase journals
its outcomes as they come (``<output>/.run/``), and ``resume=True`` finishes a run that was
killed, giving the logs, templates and summary an uninterrupted run gives (latencies aside).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import platform
import shutil
import signal
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from frvt import checks as C
from frvt import settings
from frvt.config_folder import MovedConfig, install_watch, restore_moved, restore_orphan
from frvt.contract import (
    DEFAULT_IMPLEMENTATION,
    FRVT_STRUCTS_MAJOR_VERSION,
    FRVT_STRUCTS_MINOR_VERSION,
    ImplementationSpec,
    ReturnCode,
    TemplateRole,
    load_implementation,
)
from frvt.driver import PhaseResult, match_phase, multi_phase, template_phase
from frvt.records import (
    ImageEntry,
    ListFormatError,
    MatchEntry,
    read_image_list,
    read_match_list,
    write_json,
    write_match_list,
    write_match_log,
    write_multiperson_log,
    write_template_log,
    write_text_atomic,
)
from frvt.worker import WorkerLimits, WorkerPool

SCHEMA = "frvt.validate/2"
DEFAULT_VALIDATION_DIR = settings.data_root() / "validation"
#: The operating system NIST's validation package requires (its ``check_os``) and writes to os.txt.
NIST_REQUIRED_OS = "Ubuntu 24.04.3 LTS"
RUN_DIR = ".run"


class ValidationSetupError(RuntimeError):
    """The run cannot start (no config directory, an unloadable implementation, a changed resume...)."""


@dataclass
class ValidationResult:
    summary: dict
    output_dir: Path
    package: Path | None
    checks: list[C.Check] = field(default_factory=list)

    @property
    def failed(self) -> list[C.Check]:
        return [c for c in self.checks if c.status == C.FAIL]


@dataclass
class Lists:
    enroll: list[ImageEntry]
    verif: list[ImageEntry]
    pairs: list[MatchEntry]
    multiface: list[ImageEntry]
    multiperson: list[ImageEntry]


def parse_lists(input_dir: str | Path) -> Lists:
    """Read the input lists of ``input_dir``; raises ListFormatError naming file and line.

    ``enroll.txt``, ``verif.txt`` and ``match.txt`` are required; ``enroll_multiface.txt`` and
    ``verif_multiperson.txt`` are read when present. Stricter than NIST: enrolment and
    verification ids must differ (their templates share one folder), and each multi-person id must
    be an enrolment id (its templates are compared with that enrolment template).
    """
    d = Path(input_dir)
    enroll = read_image_list(d / "enroll.txt")
    verif = read_image_list(d / "verif.txt")
    enroll_ids = {e.id: e for e in enroll}
    for v in verif:
        if v.id in enroll_ids:
            raise ListFormatError(
                d / "verif.txt",
                v.line_no,
                f"id {v.id!r} is also an enrolment id (enroll.txt line "
                f"{enroll_ids[v.id].line_no}): both templates would be {v.id}.template",
            )
    pairs = read_match_list(d / "match.txt", set(enroll_ids), {v.id for v in verif})
    multiface = read_image_list(d / "enroll_multiface.txt") if (d / "enroll_multiface.txt").exists() else []
    multiperson = []
    if (d / "verif_multiperson.txt").exists():
        multiperson = read_image_list(d / "verif_multiperson.txt", single_image=True)
        for m in multiperson:
            if m.id not in enroll_ids:
                raise ListFormatError(
                    d / "verif_multiperson.txt",
                    m.line_no,
                    f"id {m.id!r} is not an enrolment id: "
                    f"its templates are compared with {m.id}.template from enroll.txt",
                )
    return Lists(enroll, verif, pairs, multiface, multiperson)


def resolve_config_dir(impl, config_dir: str | Path | None) -> Path:
    """The given config directory, or the one the implementation builds for itself."""
    try:
        return settings.resolve_config_dir(impl, config_dir)
    except settings.ConfigDirError as exc:
        raise ValidationSetupError(str(exc)) from exc


def _digest(input_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("enroll.txt", "verif.txt", "match.txt", "enroll_multiface.txt", "verif_multiperson.txt"):
        p = input_dir / name
        h.update(name.encode() + (p.read_bytes() if p.exists() else b"-"))
    return h.hexdigest()


class ThreadSampler:
    """Samples the threads of the pool's first worker (the single-process phase) via psutil."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.last = 0.0
        self.start = time.perf_counter()
        self.base: dict[tuple[int, int], float] = {}
        self.latest: dict[tuple[int, int], float] = {}
        self.main: set[tuple[int, int]] = set()
        self.max_threads = 0
        self.idle_s = 0.0
        self.idle_cpu_s = 0.0
        self.restored: C.ThreadSample | None = None
        # Whole-process CPU (Linux counts threads that have exited too): a thread started and
        # joined inside one call may never be seen in a sample of the live threads.
        self.proc_base: dict[int, float] = {}
        self.proc_latest: dict[int, float] = {}

    def __call__(self, pool: WorkerPool) -> None:
        import psutil

        now = time.perf_counter()
        if now - self.last < self.interval_s or not pool.workers:
            return
        self.last = now
        pid = pool.workers[0].pid
        try:
            proc = psutil.Process(pid)
            threads = proc.threads()
            times = proc.cpu_times()
        except (psutil.Error, ValueError, TypeError):
            return
        self.proc_base.setdefault(pid, times.user + times.system)
        self.proc_latest[pid] = times.user + times.system
        # NIST's driver starts no thread of its own; the harness's imports (numpy's and OpenCV's
        # pools) do, in the worker, before the implementation is loaded: those are not counted.
        harness = pool.workers[0].harness_threads - {pid}
        self.max_threads = max(self.max_threads, sum(1 for t in threads if t.id not in harness))
        self.main.add((pid, pid))
        for t in threads:
            key = (pid, t.id)
            cpu = t.user_time + t.system_time
            self.base.setdefault(key, cpu)
            self.latest[key] = cpu

    def idle_probe(self, pool: WorkerPool, seconds: float = 0.5) -> None:
        """CPU the first worker's threads use while no call runs: a thread that computes on its own
        between calls (NIST counts threads; a fast phase can end before such a thread shows there)."""
        import psutil

        if not pool.workers:
            return
        pid = pool.workers[0].pid

        def cpu_by_thread() -> dict[int, float]:
            try:
                return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}
            except (psutil.Error, ValueError, TypeError):
                return {}

        before = cpu_by_thread()
        time.sleep(seconds)
        after = cpu_by_thread()
        self.idle_s = seconds
        self.idle_cpu_s = sum(max(0.0, c - before.get(tid, 0.0)) for tid, c in after.items())

    def keep(self, path: Path) -> None:
        """Save what was sampled; when a resumed phase made no calls, take the stopped run's sample."""
        if self.latest:
            write_json(path, dataclasses.asdict(self.result()))
        elif path.exists():
            try:
                self.restored = C.ThreadSample(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                self.restored = None

    def result(self) -> C.ThreadSample:
        if self.restored is not None and not self.latest:
            return self.restored
        used = {k: max(0.0, self.latest[k] - self.base.get(k, 0.0)) for k in self.latest}
        main = sum(v for k, v in used.items() if k in self.main)
        process = sum(max(0.0, self.proc_latest[p] - self.proc_base.get(p, 0.0)) for p in self.proc_latest)
        cpu = max(sum(used.values()), process)
        busy = sum(1 for c in used.values() if c >= max(0.05, 0.10 * cpu))
        return C.ThreadSample(
            time.perf_counter() - self.start,
            cpu,
            main,
            self.max_threads,
            busy,
            sorted(used.values(), reverse=True),
            self.idle_s,
            self.idle_cpu_s,
        )


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def _stage_config(built: Path, out: Path, keep: bool) -> Path:
    """Copy a config folder the implementation built (in a shared cache) to ``<out>/config``."""
    staged = out / "config"
    if keep and staged.is_dir():
        return staged
    if staged.exists():
        shutil.rmtree(staged)
    shutil.copytree(built, staged, symlinks=False)
    return staged


def _write_logs(out: Path, phases: dict[str, PhaseResult]) -> None:
    v, extra = out / "validation", out / "extra"
    names = {
        "enroll": v / "enroll.log",
        "verif": v / "verif.log",
        "enroll_single": extra / "enroll_single.log",
        "enroll_multiface": extra / "enroll_multiface.log",
    }
    for phase, path in names.items():
        if phase in phases:
            write_template_log(path, [r for o in phases[phase].outcomes for r in o.rows])
    if "verif_multiperson" in phases:
        write_multiperson_log(
            v / "verif_multiperson.log", [r for o in phases["verif_multiperson"].outcomes for r in o.rows]
        )
    for phase in ("match", "match_multiperson"):
        if phase in phases:
            rows = [m.row for m in phases[phase].outcomes]
            write_match_log(v / f"{phase}.log", rows)
            write_match_log(extra / f"{phase}_exact.log", rows, exact=True)


def validate(
    implementation: str | ImplementationSpec = DEFAULT_IMPLEMENTATION,
    input_dir: str | Path = DEFAULT_VALIDATION_DIR,
    output_dir: str | Path = "frvt-validation",
    config_dir: str | Path | None = None,
    workers: int = 4,
    budget_ms: float = 1000.0,
    warmup: int = 3,
    org: str | None = None,
    seq: int = 1,
    version: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    call_timeout_s: float | None = None,
    memory_limit_mib: int | None = None,
    resume: bool = False,
) -> ValidationResult:
    """Run the whole validation; see the module docstring. Raises ListFormatError on a bad list
    and ValidationSetupError when the run cannot start.

    ``log`` receives one line of progress text at a time. ``call_timeout_s`` defaults to
    :data:`frvt.worker.CALL_TIMEOUT_BUDGETS` times the budget; ``memory_limit_mib`` to
    :data:`frvt.worker.DEFAULT_MEMORY_LIMIT_MIB`.
    """
    from validation.latency import latency_stats

    say = log or (lambda text: None)
    started = time.time()
    spec = ImplementationSpec.parse(implementation)
    input_dir = Path(input_dir)
    lists = parse_lists(input_dir)
    limits = WorkerLimits.for_budget(budget_ms, call_timeout_s, memory_limit_mib)

    out = Path(output_dir).resolve()
    run_dir = out / RUN_DIR
    restore_moved(run_dir / "config-moved.json", say)
    settings = {
        "implementation": str(spec),
        "factory": spec.factory,
        "kwargs": [list(kv) for kv in spec.kwargs],
        "input_digest": _digest(input_dir),
        "config_dir": str(config_dir) if config_dir else None,
        "budget_ms": budget_ms,
        "workers": workers,
        "warmup": warmup,
    }
    if resume and (run_dir / "run.json").exists():
        previous = json.loads((run_dir / "run.json").read_text())
        changed = [k for k in ("implementation", "input_digest", "config_dir") if previous.get(k) != settings[k]]
        if changed:
            raise ValidationSetupError(
                f"cannot resume {out}: {', '.join(changed)} changed since the run began "
                "(run without --resume to start again)"
            )
        say(f"resuming the run in {out}")
    else:
        resume = False
        for sub in ("validation", "extra", RUN_DIR):
            shutil.rmtree(out / sub, ignore_errors=True)
    if config_dir is not None:
        restore_orphan(Path(config_dir).resolve(), say)
        original = resolve_config_dir(None, config_dir)
    else:
        try:
            builder = load_implementation(spec)
        except Exception as exc:
            raise ValidationSetupError(str(exc)) from exc
        original = _stage_config(resolve_config_dir(builder, None), out, keep=resume)
        restore_orphan(original, say)
    templates_dir = out / "validation" / "templates"
    templates_dir.mkdir(parents=True, exist_ok=True)
    (out / "extra").mkdir(exist_ok=True)
    write_json(run_dir / "run.json", settings)
    _write_list_copies(out, lists)

    phases: dict[str, PhaseResult] = {}
    phase_seconds: dict[str, float] = {}
    violations: list[str] = []
    init = None
    init_failures: list[str] = []
    sampler = ThreadSampler()
    attributes: dict = {}
    report_path = run_dir / "config-access.txt"
    moved = MovedConfig.move(original, run_dir)
    previous_sigterm = _raise_on_sigterm()
    pool = None
    try:
        say(
            f"config folder {original} moved away; the implementation gets a read-only copy named {moved.read_only_copy.name}"
        )
        setup = functools.partial(
            install_watch,
            tuple(sorted({str(original), os.path.realpath(original)})),
            (str(moved.read_only_copy),),
            str(report_path),
        )
        pool = WorkerPool(spec, str(moved.read_only_copy), limits, setup, say)
        t0 = time.perf_counter()
        failed = pool.ensure(1)
        if failed is not None:
            say("initialize failed with the config folder moved away; trying again with it in place")
            moved.put_back()
            pool.broken = None
            again = pool.ensure(1)
            if again is None:
                violations.append(
                    f"initialize failed while {original} was moved away ({failed.error or failed.info or failed.code})"
                    " and succeeded with it in place: the implementation opens a hard-coded path"
                )
            else:
                init = again
        init_failures = [r.failure.detail for r in pool.init_results if r.failure is not None]
        phase_seconds["initialize"] = time.perf_counter() - t0
        ok_inits = [r for r in pool.init_results if r.failure is None and not r.error and r.code == ReturnCode.Success]
        if init is None and ok_inits:
            init = ok_inits[0]
            attributes = init.attributes
        elif init is None:
            init = pool.init_results[-1]
        if pool.workers:
            jobs = [
                (
                    "enroll_single",
                    lambda **kw: template_phase(
                        pool,
                        run_dir / "enroll_single.jsonl",
                        lists.enroll,
                        TemplateRole.Enrollment_11,
                        None,
                        1,
                        on_tick=sampler,
                        **kw,
                    ),
                ),
                (
                    "enroll_multiface",
                    lambda **kw: template_phase(
                        pool,
                        run_dir / "enroll_multiface.jsonl",
                        lists.multiface,
                        TemplateRole.Enrollment_11,
                        None,
                        1,
                        **kw,
                    ),
                ),
                (
                    "enroll",
                    lambda **kw: template_phase(
                        pool,
                        run_dir / "enroll.jsonl",
                        lists.enroll,
                        TemplateRole.Enrollment_11,
                        templates_dir,
                        workers,
                        **kw,
                    ),
                ),
                (
                    "verif",
                    lambda **kw: template_phase(
                        pool,
                        run_dir / "verif.jsonl",
                        lists.verif,
                        TemplateRole.Verification_11,
                        templates_dir,
                        workers,
                        **kw,
                    ),
                ),
                (
                    "match",
                    lambda **kw: match_phase(pool, run_dir / "match.jsonl", lists.pairs, templates_dir, workers, **kw),
                ),
                (
                    "verif_multiperson",
                    lambda **kw: multi_phase(
                        pool,
                        run_dir / "verif_multiperson.jsonl",
                        lists.multiperson,
                        TemplateRole.Verification_11,
                        templates_dir,
                        1,
                        **kw,
                    ),
                ),
                (
                    "match_multiperson",
                    lambda **kw: match_phase(
                        pool,
                        run_dir / "match_multiperson.jsonl",
                        _multiperson_pairs(out, phases),
                        templates_dir,
                        1,
                        **kw,
                    ),
                ),
            ]
            for name, job in jobs:
                if name in ("enroll_multiface",) and not lists.multiface:
                    continue
                if name in ("verif_multiperson", "match_multiperson") and not lists.multiperson:
                    continue
                say(
                    f"{name}: "
                    + {
                        "enroll_single": "enrolment on one worker, threads sampled",
                        "enroll_multiface": "several images per subject, one worker",
                        "verif_multiperson": "several persons per image, one worker",
                        "match_multiperson": "multi-person templates against enrolment, one worker",
                    }.get(name, f"{workers} workers")
                )
                t0 = time.perf_counter()
                phases[name] = job(progress=_progress_bar(name) if progress else None)
                phase_seconds[name] = time.perf_counter() - t0
                if phases[name].resumed:
                    say(f"{name}: {phases[name].resumed} inputs taken from the journal")
                if name == "enroll_single":
                    sampler.idle_probe(pool)
                    sampler.keep(run_dir / "threads.json")
        for line in report_path.read_text().splitlines() if report_path.exists() else []:
            violations.append(line)
        violations += moved.changes_to_copy()
    finally:
        if pool is not None:
            pool.close()
        moved.restore()
        signal.signal(signal.SIGTERM, previous_sigterm)
    _write_logs(out, phases)
    return _finish(
        out,
        spec,
        input_dir,
        original,
        lists,
        phases,
        phase_seconds,
        init,
        init_failures,
        attributes,
        violations,
        sampler,
        limits,
        budget_ms,
        warmup,
        workers,
        org,
        seq,
        version,
        started,
        latency_stats,
    )


def _raise_on_sigterm():
    """SIGTERM ends the run like Ctrl-C, so that the config folder is put back."""

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt("SIGTERM")

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return signal.getsignal(signal.SIGTERM)


def _progress_bar(name: str):
    import sys

    from tqdm import tqdm

    bars: dict = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bars:
            bars["bar"] = tqdm(total=total, desc=name, file=sys.stderr, initial=done - 1)
        bars["bar"].update(1)
        if done >= total:
            bars["bar"].close()

    return update


def _multiperson_pairs(out: Path, phases: dict[str, PhaseResult]) -> list[MatchEntry]:
    """``<id>.template <id>_<i>.template`` for every template of the multi-person phase, as NIST's
    script builds ``match_multiperson.txt`` (stricter: NIST's script skips the list's first line)."""
    pairs = [
        MatchEntry(o.id, f"{o.id}_{i}", 0, f"{o.id}.template", f"{o.id}_{i}.template")
        for o in phases["verif_multiperson"].outcomes
        for i in range(o.n_templates)
    ]
    write_match_list(out / "lists" / "match_multiperson.txt", pairs)
    return pairs


def _write_list_copies(out: Path, lists: Lists) -> None:
    """Copies of the input lists with absolute paths and an explicit identity column, for scoring."""
    for name, entries in (("enroll.txt", lists.enroll), ("verif.txt", lists.verif)):
        write_text_atomic(
            out / "lists" / name, "".join(f"{e.id} {e.path} {int(e.label)} {e.identity}\n" for e in entries)
        )
    write_match_list(out / "lists" / "match.txt", lists.pairs)


def _finish(
    out,
    spec,
    input_dir,
    original,
    lists,
    phases,
    phase_seconds,
    init,
    init_failures,
    attributes,
    violations,
    sampler,
    limits,
    budget_ms,
    warmup,
    workers,
    org,
    seq,
    version,
    started,
    latency_stats,
) -> ValidationResult:
    get = lambda name: phases[name].outcomes if name in phases else []  # noqa: E731
    single, multiface, enrolled, verified = get("enroll_single"), get("enroll_multiface"), get("enroll"), get("verif")
    matched, multiperson, matched_multi = get("match"), get("verif_multiperson"), get("match_multiperson")
    call_ms = [o.elapsed_ms for o in single if o.elapsed_ms is not None and o.failure is None]
    latency = latency_stats(call_ms[warmup:] if len(call_ms) > warmup else call_ms)
    latency = {
        k: latency[k]
        for k in (
            "n",
            "median_ms",
            "p90_ms",
            "p99_ms",
            "max_ms",
            "mean_ms",
            "min_ms",
            "stdev_ms",
            "unstable",
            "unstable_reasons",
        )
    }
    latency["budget_ms"] = budget_ms
    latency["warmup_excluded"] = min(warmup, len(call_ms))
    version_text = version if version is not None else attributes.get("version")
    init_code = init.code if init is not None else int(ReturnCode.UnknownError)
    init_error = init.error if init is not None else "no worker started"
    template_phases = {
        "enroll_single": single,
        "enroll_multiface": multiface,
        "enroll": enrolled,
        "verif": verified,
        "verif_multiperson": multiperson,
    }
    call_phases = dict(template_phases, match=matched, match_multiperson=matched_multi)
    ran = bool(phases)
    results = [C.check_initialize(init_code, init.info if init else "", init_error if not ran else None)]
    if ran:
        counts = {
            "enroll.log": (sum(len(o.rows) for o in enrolled), sum(len(e.images) for e in lists.enroll)),
            "verif.log": (sum(len(o.rows) for o in verified), sum(len(e.images) for e in lists.verif)),
            "match.log": (len(matched), len(lists.pairs)),
        }
        if lists.multiperson:
            counts["match_multiperson.log"] = (len(matched_multi), sum(o.n_templates for o in multiperson))
        by_enroll = {o.id: o for o in enrolled}
        by_verif = {o.id: o for o in verified}
        all_templates = single + multiface + enrolled + verified
        results += [
            C.check_crashes(call_phases, init_failures),
            C.check_timeouts(call_phases, limits.call_timeout_s),
            C.check_exceptions(all_templates + multiperson, matched + matched_multi),
            C.check_not_implemented(template_phases),
            C.check_multiperson(multiperson),
            C.check_multi_image_eyes(multiface + enrolled + verified),
            C.check_log_lines(counts),
            C.check_return_codes(enrolled + verified + multiperson, matched + matched_multi),
            C.check_unique_scores(matched),
            C.check_scores_valid(matched + matched_multi),
            C.check_failed_templates_matchable(by_enroll, by_verif, matched),
            C.check_template_sizes(enrolled + verified),
            C.check_eye_coordinates(all_templates),
            C.check_single_thread(sampler.result()),
            C.check_latency(latency, budget_ms),
            C.check_deterministic(single, by_enroll),
        ]
    results += [C.check_config_path(violations, str(original)), C.check_version_file(version_text)]
    os_name = _os_name()
    library = attributes.get("library_path")
    submittable = bool(library)
    reason = (
        None
        if submittable
        else (
            "a Python implementation cannot be submitted to NIST: NIST runs a C++ shared "
            "library built against its 1:1 headers (lib/libfrvt_11_<org>_<seq>.so)"
        )
    )
    failures = [
        {
            "list": name,
            "id": o.id,
            "code": o.row.code,
            "code_name": C._code_name(o.row.code),
            "info": (o.failure or {}).get("detail") or o.info or o.exception or "",
        }
        for name, outs in (("enroll", enrolled), ("verif", verified))
        for o in outs
        if o.row.code != ReturnCode.Success
    ]
    from frvt.perf.machine import machine_info

    verdict = (
        C.FAIL
        if any(c.status == C.FAIL for c in results)
        else (C.WARN if any(c.status == C.WARN for c in results) else C.PASS)
    )
    nist_fatal = [c.name for c in results if c.status == C.FAIL and c.nist == C.FATAL]
    summary = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "implementation": str(spec),
        "implementation_version": version_text,
        "api_version": "6.0",
        "structs_version": f"{FRVT_STRUCTS_MAJOR_VERSION}.{FRVT_STRUCTS_MINOR_VERSION}",
        "input_dir": str(input_dir.resolve()),
        "config_dir": str(original),
        "workers": workers,
        "limits": {
            "call_timeout_s": limits.call_timeout_s,
            "init_timeout_s": limits.init_timeout_s,
            "memory_limit_mib": limits.memory_limit_mib,
        },
        "counts": {
            "enroll": len(lists.enroll),
            "verif": len(lists.verif),
            "match": len(lists.pairs),
            "enroll_multiface": len(lists.multiface),
            "verif_multiperson": len(lists.multiperson),
            "multiperson_templates": sum(o.n_templates for o in multiperson),
            "enroll_failed": sum(o.row.code != 0 for o in enrolled),
            "verif_failed": sum(o.row.code != 0 for o in verified),
            "match_failed": sum(m.row.code != 0 for m in matched),
        },
        "checks": [c.to_json() for c in results],
        "verdict": verdict,
        "nist_fatal": nist_fatal,
        "submittable": submittable,
        "not_submittable_reason": reason,
        "os": {"this_machine": os_name, "nist_requires": NIST_REQUIRED_OS},
        "latency": latency,
        "phases": {
            name: {
                "inputs": len(r.outcomes),
                "from_journal": r.resumed,
                "peak_rss_mib": round(r.stats.peak_rss_mib, 1),
                "worker_restarts": r.stats.worker_restarts,
            }
            for name, r in phases.items()
        },
        "timings": {k: round(v, 3) for k, v in phase_seconds.items()} | {"total_s": round(time.time() - started, 3)},
        "template_failures": failures,
        "machine": machine_info(),
    }
    if attributes.get("target") is not None:
        summary["target"] = attributes["target"]
    package = None
    if version_text and str(version_text).strip():
        org_name = org or attributes.get("organization") or "anon"
        package = build_package(out, original, version_text, org_name, seq, library, os_name)
        summary["package"] = str(package)
    write_json(out / "summary.json", summary)
    return ValidationResult(summary, out, package, results)


def build_package(
    out: Path,
    config_dir: Path,
    version_text: str,
    org: str,
    seq: int,
    library: str | None = None,
    os_name: str | None = None,
) -> Path:
    """The archive NIST asks for, ``libfrvt_11_<org>_<seq>.v<structs>.tar.gz`` with ``./config
    ./lib ./validation ./doc`` (``validation/os.txt`` included), when a native core library was
    validated; otherwise ``NOT-SUBMITTABLE_python_11_<org>_<seq>.tar.gz`` without ``./lib``.
    """
    doc = out / "doc"
    doc.mkdir(exist_ok=True)
    write_text_atomic(doc / "version.txt", str(version_text).strip() + "\n")
    write_text_atomic(out / "validation" / "os.txt", (os_name or _os_name()) + "\n")
    structs = f"{FRVT_STRUCTS_MAJOR_VERSION}.{FRVT_STRUCTS_MINOR_VERSION}"
    members = [(config_dir, "./config"), (out / "validation", "./validation"), (doc, "./doc")]
    if library:
        lib = Path(library)
        name = f"{lib.name.removesuffix('.so')}.v{structs}"
        members.insert(1, (lib.parent, "./lib"))
    else:
        name = f"NOT-SUBMITTABLE_python_11_{org.lower()}_{seq:03d}"
    path = out / f"{name}.tar.gz"
    for stale in list(out.glob("NOT-SUBMITTABLE_python_11_*.tar.gz")) + list(out.glob("libfrvt_11_*.tar.gz")):
        stale.unlink()
    tmp = out / f".{name}.tar.gz.partial"
    with tarfile.open(tmp, "w:gz") as tar:
        for src, arc in members:
            tar.add(src, arcname=arc)
    os.replace(tmp, path)
    return path
