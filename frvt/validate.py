"""``frvt validate``: drive an implementation through NIST's 1:1 validation protocol and check it.

The run, as NIST's validation does it:

1. Parse the three lists first; a malformed line stops the run before any work (ListFormatError).
2. Copy the config directory to a read-only folder of another name; ``initialize`` it once, in
   this process, while an audit hook watches for any access to the original folder or any write
   to the copy (Python-level opens, listings, renames and removals; shared libraries mapped from
   the original are caught from ``/proc/self/maps``).
3. One single-process enrolment in a forked child while its threads are sampled: the
   implementation must compute on one thread. Per-call create-template latency comes from this
   run (warm-ups excluded).
4. Enrolment, verification templates and matching with N forked worker processes.
5. NIST logs, templates, ``summary.json`` and the submission package ``frvt_11_<org>_<seq>.tar.gz``.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from frvt import checks as C
from frvt import settings
from frvt.contract import DEFAULT_IMPLEMENTATION, Implementation, ReturnCode, TemplateRole, load_implementation
from frvt.driver import create_templates, limit_threads, match_all, single_process_enrolment
from frvt.records import (
    ImageEntry,
    read_image_list,
    read_match_list,
    write_json,
    write_match_log,
    write_template_log,
    write_text_atomic,
)

SCHEMA = "frvt.validate/1"
DEFAULT_VALIDATION_DIR = settings.data_root() / "validation"


class ValidationSetupError(RuntimeError):
    """The run cannot start (no config directory, an unloadable implementation...)."""


@dataclass
class ValidationResult:
    summary: dict
    output_dir: Path
    package: Path | None
    checks: list[C.Check] = field(default_factory=list)

    @property
    def failed(self) -> list[C.Check]:
        return [c for c in self.checks if c.status == C.FAIL]


# ---------------------------------------------------------------------------------------------
# Watching the config directory (an audit hook cannot be removed, so one watcher per process).


class _ConfigWatch:
    """Records accesses to forbidden paths via ``sys.addaudithook``; inherited by forked children.

    Violations are appended with ``os.write`` to a file descriptor opened before forking, so that
    every worker process reports into one file.
    """

    _installed = False

    def __init__(self) -> None:
        self.read_forbidden: tuple[str, ...] = ()
        self.write_forbidden: tuple[str, ...] = ()
        self.fd: int | None = None
        self._busy = False

    def start(self, read_forbidden: list[str], write_forbidden: list[str], report_path: Path) -> None:
        self.read_forbidden = tuple(sorted({p for p in read_forbidden if p}))
        self.write_forbidden = tuple(sorted({p for p in write_forbidden if p}))
        self.fd = os.open(report_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if not _ConfigWatch._installed:
            sys.addaudithook(self._hook)
            _ConfigWatch._installed = True

    def stop(self) -> None:
        self.read_forbidden, self.write_forbidden = (), ()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    @staticmethod
    def _under(path, prefixes: tuple[str, ...]) -> str | None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return None
        p = os.path.abspath(os.fspath(path))
        for prefix in prefixes:
            if p == prefix or p.startswith(prefix + os.sep):
                return p
        return None

    def _report(self, text: str) -> None:
        if self.fd is not None:
            os.write(self.fd, (text.replace("\n", " ") + "\n").encode())

    def _hook(self, event: str, args: tuple) -> None:
        if self._busy or not (self.read_forbidden or self.write_forbidden) or self.fd is None:
            return
        self._busy = True
        try:
            if event == "open" and args:
                path, mode, flags = (list(args) + [None, None])[:3]
                hit = self._under(path, self.read_forbidden)
                if hit:
                    self._report(f"opened {hit}")
                writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
                )
                hit = writing and self._under(path, self.write_forbidden)
                if hit:
                    self._report(f"opened for writing {hit}")
            elif event in ("os.listdir", "os.scandir") and args:
                hit = self._under(args[0], self.read_forbidden)
                if hit:
                    self._report(f"listed {hit}")
            elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.chmod", "os.truncate") and args:
                for a in args[:2]:
                    hit = self._under(a, self.write_forbidden + self.read_forbidden)
                    if hit:
                        self._report(f"{event} {hit}")
        finally:
            self._busy = False


_WATCH = _ConfigWatch()


def _mapped_files_under(prefixes: list[str]) -> list[str]:
    try:
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    hits = set()
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) == 6:
            path = parts[5].strip()
            if any(path == p or path.startswith(p + os.sep) for p in prefixes):
                hits.add(f"mapped {path}")
    return sorted(hits)


def _make_read_only(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    for dirpath, dirnames, _ in os.walk(root, topdown=False):
        p = Path(dirpath)
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _make_writable(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        Path(dirpath).chmod(0o755)
        for name in filenames:
            (Path(dirpath) / name).chmod(0o644)


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


# ---------------------------------------------------------------------------------------------


def parse_lists(input_dir: str | Path) -> tuple[list[ImageEntry], list[ImageEntry], list]:
    """Read enroll.txt, verif.txt and match.txt of ``input_dir``; raises ListFormatError."""
    input_dir = Path(input_dir)
    enroll = read_image_list(input_dir / "enroll.txt")
    verif = read_image_list(input_dir / "verif.txt")
    pairs = read_match_list(input_dir / "match.txt", {e.id for e in enroll}, {v.id for v in verif})
    return enroll, verif, pairs


def resolve_config_dir(impl: Implementation, config_dir: str | Path | None) -> Path:
    """The given config directory, or the one the implementation builds for itself."""
    try:
        return settings.resolve_config_dir(impl, config_dir)
    except settings.ConfigDirError as exc:
        raise ValidationSetupError(str(exc)) from exc


def _write_list_copies(out: Path, enroll, verif, pairs) -> None:
    """Copies of the input lists with absolute paths and an explicit identity column, for scoring."""
    for name, entries in (("enroll.txt", enroll), ("verif.txt", verif)):
        write_text_atomic(
            out / "lists" / name, "".join(f"{e.id} {e.path} {int(e.label)} {e.identity}\n" for e in entries)
        )
    write_text_atomic(out / "lists" / "match.txt", "".join(f"{p.enroll_id} {p.verif_id}\n" for p in pairs))


def validate(
    implementation: str = DEFAULT_IMPLEMENTATION,
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
    log=None,
) -> ValidationResult:
    """Run the whole validation; see the module docstring. Raises ListFormatError on a bad list.

    ``log`` is an optional callable receiving one line of progress text at a time.
    """
    from validation.latency import latency_stats

    say = log or (lambda text: None)
    started = time.time()
    enroll, verif, pairs = parse_lists(input_dir)
    try:
        impl = load_implementation(implementation)
    except Exception as exc:
        raise ValidationSetupError(str(exc)) from exc
    original_config = resolve_config_dir(impl, config_dir)

    out = Path(output_dir).resolve()
    (out / "validation").mkdir(parents=True, exist_ok=True)
    templates_dir = out / "templates"
    if templates_dir.exists():
        shutil.rmtree(templates_dir)
    _write_list_copies(out, enroll, verif, pairs)

    timings: dict[str, float] = {}
    results: list[C.Check] = []
    scratch = Path(tempfile.mkdtemp(prefix="frvt-validate-"))
    ro_config = scratch / "implementation_config_ro"
    report_path = scratch / "config-access.txt"
    mapped: list[str] = []
    before: dict = {}
    try:
        shutil.copytree(original_config, ro_config, symlinks=False)
        _make_read_only(ro_config)
        before = _snapshot(ro_config)
        originals = sorted({str(original_config), os.path.realpath(original_config)})
        _WATCH.start(originals, [str(ro_config), os.path.realpath(ro_config)], report_path)
        limit_threads()

        say(f"initialize({ro_config})")
        t0 = time.perf_counter()
        try:
            status = impl.initialize(str(ro_config))
            init_code, init_info, init_error = int(status.code), status.info, None
        except BaseException as exc:
            init_code, init_info, init_error = (
                int(ReturnCode.UnknownError),
                "",
                f"initialize raised {type(exc).__name__}: {exc}",
            )
        timings["initialize_s"] = time.perf_counter() - t0
        results.append(C.check_initialize(init_code, init_info, init_error))
        mapped = _mapped_files_under(originals)

        say(f"single-process enrolment of {len(enroll)} images, sampling threads")
        t0 = time.perf_counter()
        single, sample = single_process_enrolment(impl, enroll, TemplateRole.Enrollment_11)
        timings["single_process_enrol_s"] = time.perf_counter() - t0
        call_ms = [o.elapsed_ms for o in single if o.elapsed_ms is not None]
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

        say(f"enrolment with {workers} workers")
        t0 = time.perf_counter()
        enrolled = create_templates(impl, enroll, TemplateRole.Enrollment_11, templates_dir, workers, progress)
        timings["enrol_s"] = time.perf_counter() - t0
        say(f"verification templates with {workers} workers")
        t0 = time.perf_counter()
        verified = create_templates(impl, verif, TemplateRole.Verification_11, templates_dir, workers, progress)
        timings["verif_s"] = time.perf_counter() - t0
        say(f"{len(pairs)} comparisons with {workers} workers")
        t0 = time.perf_counter()
        matched = match_all(impl, pairs, templates_dir, workers, progress)
        timings["match_s"] = time.perf_counter() - t0
    finally:
        _WATCH.stop()
        violations = report_path.read_text().splitlines() if report_path.exists() else []
        try:
            after = _snapshot(ro_config) if ro_config.exists() else {}
            if ro_config.exists() and after != before:
                changed = sorted(set(after.items()) ^ set(before.items()))
                violations += [f"config copy changed: {name}" for name, _ in changed[:10]]
        except OSError:
            pass
        if ro_config.exists():
            _make_writable(ro_config)
        shutil.rmtree(scratch, ignore_errors=True)
    violations += mapped

    write_template_log(out / "validation" / "enroll.log", [o.row for o in enrolled])
    write_template_log(out / "validation" / "verif.log", [o.row for o in verified])
    write_match_log(out / "validation" / "match.log", [m.row for m in matched])

    by_enroll = {o.row.id: o for o in enrolled}
    by_verif = {o.row.id: o for o in verified}
    version_text = version if version is not None else getattr(impl, "version", None)
    results += [
        C.check_log_lines(
            {
                "enroll.log": (len(enrolled), len(enroll)),
                "verif.log": (len(verified), len(verif)),
                "match.log": (len(matched), len(pairs)),
            }
        ),
        C.check_return_codes(enrolled + verified, matched),
        C.check_exceptions(single + enrolled + verified, matched),
        C.check_unique_scores(matched),
        C.check_scores_valid(matched),
        C.check_failed_templates_matchable(by_enroll, by_verif, matched),
        C.check_template_sizes(enrolled + verified),
        C.check_eye_coordinates(enrolled + verified),
        C.check_single_thread(sample),
        C.check_config_path(violations, str(original_config)),
        C.check_latency(latency, budget_ms),
        C.check_deterministic(single, by_enroll),
        C.check_version_file(version_text),
    ]

    failures = [
        {
            "list": list_name,
            "id": o.row.id,
            "image": o.row.image,
            "code": o.row.code,
            "code_name": C._code_name(o.row.code),
            "info": o.info or o.exception or "",
        }
        for list_name, outcomes in (("enroll", enrolled), ("verif", verified))
        for o in outcomes
        if o.row.code != ReturnCode.Success
    ]

    from frvt.perf.machine import machine_info

    org_name = org or getattr(impl, "organization", None) or "anon"
    summary = {
        "schema": SCHEMA,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "implementation": implementation,
        "implementation_version": version_text,
        "input_dir": str(Path(input_dir).resolve()),
        "config_dir": str(original_config),
        "workers": workers,
        "counts": {
            "enroll": len(enroll),
            "verif": len(verif),
            "match": len(pairs),
            "enroll_failed": sum(o.row.code != 0 for o in enrolled),
            "verif_failed": sum(o.row.code != 0 for o in verified),
            "match_failed": sum(m.row.code != 0 for m in matched),
        },
        "checks": [c.to_json() for c in results],
        "verdict": C.FAIL
        if any(c.status == C.FAIL for c in results)
        else (C.WARN if any(c.status == C.WARN for c in results) else C.PASS),
        "latency": latency,
        "timings": {k: round(v, 3) for k, v in timings.items()} | {"total_s": round(time.time() - started, 3)},
        "template_failures": failures,
        "machine": machine_info(),
    }
    target = getattr(impl, "target", None)
    if target is not None:
        summary["target"] = target

    package = None
    if version_text and str(version_text).strip():
        package = build_package(out, original_config, version_text, org_name, seq)
        summary["package"] = str(package)
    write_json(out / "summary.json", summary)
    return ValidationResult(summary, out, package, results)


def build_package(out: Path, config_dir: Path, version_text: str, org: str, seq: int) -> Path:
    """``frvt_11_<org>_<seq>.tar.gz`` with config/, validation/ and doc/version.txt, as NIST asks."""
    doc = out / "doc"
    doc.mkdir(exist_ok=True)
    write_text_atomic(doc / "version.txt", str(version_text).strip() + "\n")
    name = f"frvt_11_{org.lower()}_{seq:03d}"
    path = out / f"{name}.tar.gz"
    tmp = out / f".{name}.tar.gz.partial"
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(config_dir, arcname=f"{name}/config")
        tar.add(out / "validation", arcname=f"{name}/validation")
        tar.add(doc, arcname=f"{name}/doc")
    os.replace(tmp, path)
    return path
