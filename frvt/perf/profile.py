"""Per-call latency of an implementation against the budget, measured the way NIST measures it,
and explained: stage breakdown, per-operator profile, and an estimate for NIST's CPU.

How it measures
---------------
- In a fresh Python process (``python -m frvt.perf.profile``) with ``OMP_NUM_THREADS``,
  ``TVM_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` set to 1 before anything
  is imported, and ``cv2.setNumThreads(1)``: one core, as NIST times it.
- ``initialize(config_dir)`` once, then ``create_face_template([image], Enrollment_11)`` on every
  image (``repeats`` passes), each call timed on its own with the wall clock (and the thread's CPU
  time beside it), after ``warmup`` calls whose times are discarded. Then ``match_templates`` on
  up to ``max_matches`` pairs of the templates made, timed the same way.
- Decoding (image file -> :class:`frvt.contract.Image`, with the validation driver's
  :func:`frvt.driver.decode_image`: file read from the page cache + ``cv2.imdecode`` + colour
  conversion) is timed separately: NIST's harness decodes, the implementation does not.
- Stages: when the implementation sets ``last_stage_times`` (``{stage: ms}``, e.g. detect, align,
  embed, encode) during each ``create_face_template`` call, they are collected per call, and
  ``other = call - sum(stages)`` so that the stages and ``other`` add up to the call exactly.
- Operators: when the implementation has ``operator_profiles(image)`` returning
  ``{model name: [{name, time_us, percent}, ...]}`` (ours: TVM's Relax VM, timed per VM call
  instruction), the top operators by time and their share; called after all timing is done.

The verdict compares the **median** wall time per ``create_face_template`` call with the budget
by default (``verdict_statistic``); p90, p99 and max are reported beside it. See
:mod:`validation.latency`.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from frvt import settings
from frvt.contract import DEFAULT_IMPLEMENTATION, ReturnCode, TemplateRole
from frvt.perf.machine import AVX2_FLOPS_PER_CYCLE, FmaPeakUnavailable, machine_info, measure_fma_peak, versioned
from validation.latency import VERDICT_STATISTICS, latency_stats, time_calls, verdict

SCHEMA = "frvt.profile/1"
DEFAULT_IMAGES = settings.data_root() / "validation"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".tif", ".tiff", ".webp"})
#: Set in the fresh process's environment, before numpy, OpenCV or TVM are imported.
THREAD_ENV = settings.SINGLE_THREAD_ENV
#: Summary keys copied into the JSON for each timed call (besides the samples).
SUMMARY_KEYS = (
    "n",
    "median_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
    "min_ms",
    "mean_ms",
    "stdev_ms",
    "mad_ms",
    "unstable",
    "unstable_reasons",
)

#: The CPU NIST's FRVT 1:1 timing runs on, and what scaling to it assumes.
TARGET_CPU = {
    "name": "Intel Xeon E5-2630 v4 (Broadwell-EP)",
    "base_ghz": 2.2,
    "turbo_ghz": 3.1,
    "flops_per_cycle": AVX2_FLOPS_PER_CYCLE,
}


class ProfileError(RuntimeError):
    """The profile could not be made: bad input (no images, bad implementation name, failed
    ``initialize``) or the measuring process failed. The message names the cause."""


# --- inputs -------------------------------------------------------------------------------------


def find_images(images: str | Path | Sequence[str | Path] | None = None) -> list[Path]:
    """The image files to profile on.

    Parameters
    ----------
    images : path, sequence of paths, or None
        None: the bundled validation set (``data/validation/``). A directory holding NIST lists
        (``enroll.txt`` and/or ``verif.txt``, ``<id> <image path> <label>``): the images they
        name, each once, in list order. Any other directory: every image file under it
        (by suffix, recursively), sorted. A sequence: those files.

    Returns
    -------
    list of Path
        Absolute paths; at least one.

    Raises
    ------
    ProfileError
        When the directory does not exist, a list is malformed, or no image is found.
    """
    if images is not None and not isinstance(images, (str, Path)):
        paths = [Path(p).resolve() for p in images]
        if not paths:
            raise ProfileError("the list of images is empty")
        return paths
    root = Path(images) if images is not None else DEFAULT_IMAGES
    if not root.is_dir():
        hint = " (build it with scripts/build_validation_set.py, or pass --images DIR)" if images is None else ""
        raise ProfileError(f"image directory {root} does not exist{hint}")
    lists = [root / name for name in ("enroll.txt", "verif.txt") if (root / name).is_file()]
    if lists:
        from frvt.records import ListFormatError, read_image_list

        seen: dict[Path, None] = {}
        for list_path in lists:
            try:
                entries = read_image_list(list_path)
            except ListFormatError as exc:
                raise ProfileError(str(exc)) from exc
            for entry in entries:
                seen.setdefault(Path(entry.path), None)
        paths = list(seen)
    else:
        paths = sorted(p.resolve() for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ProfileError(f"no image files in {root}")
    return paths


def _resolve_config_dir(impl: Any, config_dir: str | Path | None, scratch: Path) -> Path:
    """The given config directory, the implementation's own (``default_config_dir()``), or an
    empty scratch directory for implementations that need none."""

    def empty_scratch() -> Path:
        scratch.mkdir(parents=True, exist_ok=True)
        return scratch

    try:
        return settings.resolve_config_dir(impl, config_dir, fallback=empty_scratch)
    except settings.ConfigDirError as exc:
        raise ProfileError(str(exc)) from exc


# --- measuring (in whatever process calls it) ---------------------------------------------------


def _summary(samples_ms: Sequence[float]) -> dict[str, Any]:
    stats = latency_stats(samples_ms)
    out = {k: stats[k] for k in SUMMARY_KEYS}
    out["samples_ms"] = [float(v) for v in samples_ms]
    return out


def _match_pairs(n_templates: int, max_matches: int) -> list[tuple[int, int]]:
    """Up to ``max_matches`` distinct ordered pairs (i, j), i != j, spread evenly over templates:
    every template with its next one, then with the one after, and so on."""
    pairs: list[tuple[int, int]] = []
    for offset in range(1, n_templates):
        for i in range(n_templates):
            if len(pairs) >= max_matches:
                return pairs
            pairs.append((i, (i + offset) % n_templates))
    return pairs


def _operator_rows(rows: Any, top: int) -> dict[str, Any]:
    """Normalise one model's operator rows (dicts or objects with name/time_us[/calls]) and keep
    the ``top`` slowest; ``share`` is each operator's fraction of the model's summed time."""
    norm = []
    for row in rows:
        get = row.get if isinstance(row, dict) else (lambda k, d=None, r=row: getattr(r, k, d))
        norm.append({"name": str(get("name")), "time_us": float(get("time_us")), "calls": int(get("calls", 1) or 1)})
    norm.sort(key=lambda r: r["time_us"], reverse=True)
    total = sum(r["time_us"] for r in norm)
    for r in norm:
        r["share"] = r["time_us"] / total if total > 0 else float("nan")
    kept = norm[:top]
    return {
        "total_us": total,
        "n_operators": len(norm),
        "top": kept,
        "top_share": sum(r["time_us"] for r in kept) / total if total > 0 else float("nan"),
    }


def _stage_breakdown(
    call_ms: list[float], stage_dicts: list[dict[str, float] | None], decode_ms: list[float]
) -> dict[str, Any] | None:
    """Per-stage times per call, with ``other`` making each call's stages add up to the call."""
    if not any(stage_dicts):
        return None
    order: list[str] = []
    for d in stage_dicts:
        for k in d or {}:
            if k not in order and k != "other":
                order.append(k)
    per_stage = {k: [float((d or {}).get(k, 0.0)) for d in stage_dicts] for k in order}
    other = [c - sum(per_stage[k][i] for k in order) for i, c in enumerate(call_ms)]
    per_stage["other"] = other
    mean_call = float(np.mean(call_ms))
    stages = {}
    for name, values in per_stage.items():
        v = np.asarray(values)
        stages[name] = {
            "mean_ms": float(v.mean()),
            "median_ms": float(np.median(v)),
            "max_ms": float(v.max()),
            "share": float(v.mean() / mean_call) if mean_call > 0 else float("nan"),
            "samples_ms": [float(x) for x in v],
        }
    calls_missing = sum(1 for d in stage_dicts if not d)
    negative = sum(1 for o in other if o < -1e-6)
    return {
        "stages": stages,
        "order": order + ["other"],
        "calls_without_stage_times": calls_missing,
        "calls_with_negative_other": negative,
        "harness_decode_mean_ms": float(np.mean(decode_ms)) if decode_ms else float("nan"),
        "note": "mean over calls: the means of the stages and 'other' add up to the mean call time "
        "(medians do not add up); harness_decode_mean_ms (image file -> Image) is outside the call",
    }


def measure_implementation(
    impl: Any,
    image_paths: Sequence[str | Path],
    *,
    budget_ms: float = 1000.0,
    warmup: int = 3,
    repeats: int = 1,
    max_matches: int = 1000,
    verdict_statistic: str = "median_ms",
    top_operators: int = 10,
    clock: Callable[[], float] = time.perf_counter,
    cpu_clock: Callable[[], float] | None = time.thread_time,
    progress: bool = False,
) -> dict[str, Any]:
    """Time an initialised implementation in this process and explain the time.

    Parameters
    ----------
    impl : Implementation
        Already initialised.
    image_paths : sequence of path, length n_files
        Image files; undecodable ones are listed under ``images["skipped"]`` and not profiled.
    budget_ms : float
        Limit per ``create_face_template`` call, milliseconds.
    warmup : int
        Calls of each function made first and discarded.
    repeats : int
        Passes over the images (each image is one call per pass).
    max_matches : int
        Most ``match_templates`` calls timed.
    verdict_statistic : str
        Which statistic of the create-template wall times gates the verdict (median by default).
    top_operators : int
        Operators kept per model in the operator profile.
    clock, cpu_clock : callable returning float seconds
        Wall clock (what the verdict uses) and the thread's CPU-time clock (None: not measured).
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    dict
        The result's payload (no machine or schema; see :func:`profile_implementation`).

    Raises
    ------
    ProfileError
        When no image decodes, or an exception crosses the implementation's calls.
    """
    from frvt.driver import DecodeError, decode_image

    if budget_ms is None or not (math.isfinite(budget_ms) and budget_ms > 0):
        raise ProfileError(f"budget_ms = {budget_ms!r} is not a positive number of milliseconds")
    if repeats < 1:
        raise ProfileError(f"repeats = {repeats} must be at least 1")
    decode_ms: list[float] = []
    decoded = []
    skipped = []
    for path in image_paths:
        t0 = clock()
        try:
            image = decode_image(path)
        except DecodeError as exc:
            skipped.append({"image": str(path), "reason": str(exc)})
            continue
        decode_ms.append((clock() - t0) * 1000.0)
        decoded.append((str(path), image))
    if not decoded:
        raise ProfileError(f"none of the {len(image_paths)} image(s) could be decoded")

    role = TemplateRole.Enrollment_11
    args_list = [([image], role) for _ in range(repeats) for _, image in decoded]
    n_first_pass = len(decoded)
    templates: list[bytes] = []
    codes: dict[str, int] = {}
    stage_dicts: list[dict[str, float] | None] = []
    cpu_ms: list[float] = []
    bar = None
    if progress:
        from tqdm import tqdm

        class _Bar(tqdm):
            monitor_interval = 0  # no monitor thread: the thread count below must be the implementation's

        bar = _Bar(
            total=len(args_list) + min(max_matches, n_first_pass * (n_first_pass - 1)),
            desc="profile",
            unit="call",
            file=sys.stderr,
        )

    def after_create(i: int, result: Any, elapsed_ms: float, cpu: float | None) -> None:
        stages = getattr(impl, "last_stage_times", None)
        stage_dicts.append({str(k): float(v) for k, v in stages.items()} if isinstance(stages, dict) else None)
        if cpu is not None:
            cpu_ms.append(cpu)
        name = ReturnCode(result.status.code).name
        codes[name] = codes.get(name, 0) + 1
        if i < n_first_pass:
            templates.append(bytes(result.template))
        if bar is not None:
            bar.update()

    def create(images, role_):
        if hasattr(impl, "last_stage_times"):  # a stale dict must not be read as this call's
            try:
                impl.last_stage_times = {}
            except AttributeError:
                pass
        return impl.create_face_template(images, role_)

    try:
        create_ms = time_calls(create, args_list, warmup=warmup, clock=clock, on_call=after_create, cpu_clock=cpu_clock)
        pairs = _match_pairs(len(templates), max_matches)
        match_args = [(templates[j], templates[i]) for i, j in pairs]  # (verif, enroll)
        match_codes: dict[str, int] = {}

        def after_match(i: int, result: Any, elapsed_ms: float, cpu: float | None) -> None:
            name = ReturnCode(result.status.code).name
            match_codes[name] = match_codes.get(name, 0) + 1
            if bar is not None:
                bar.update()

        match_ms = (
            time_calls(
                impl.match_templates, match_args, warmup=min(warmup, len(match_args)), clock=clock, on_call=after_match
            )
            if match_args
            else []
        )
    except Exception as exc:  # an exception crossed the contract: the profile cannot go on
        raise ProfileError(f"an exception crossed the implementation's calls: {type(exc).__name__}: {exc}") from exc
    finally:
        if bar is not None:
            bar.close()

    create_summary = _summary(create_ms)
    create_summary["return_codes"] = codes
    create_summary["n_over_budget"] = int(sum(1 for v in create_ms if v > budget_ms))
    if cpu_ms:
        cpu_stats = latency_stats(cpu_ms)
        create_summary["cpu"] = {k: cpu_stats[k] for k in ("median_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")}
        create_summary["cpu"]["samples_ms"] = cpu_ms
        # > 1 when the call waited for a core (a busy machine), or the implementation used threads
        create_summary["wall_to_cpu"] = (
            create_summary["median_ms"] / cpu_stats["median_ms"] if cpu_stats["median_ms"] > 0 else float("nan")
        )
    if match_ms:
        match_summary = _summary(match_ms)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            match_summary = _summary([])
    match_summary["return_codes"] = match_codes if match_ms else {}

    operators = None
    profiler = getattr(impl, "operator_profiles", None)
    if callable(profiler):
        try:
            raw = profiler(decoded[0][1])
            operators = {
                "image": decoded[0][0],
                "models": {str(model): _operator_rows(rows, top_operators) for model, rows in dict(raw).items()},
            }
        except Exception as exc:  # a diagnostic; the latency numbers stand without it
            operators = {"error": f"{type(exc).__name__}: {exc}"}

    try:
        import psutil

        threads = psutil.Process().num_threads()
    except ImportError:
        threads = None
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = None
    target = getattr(impl, "target", None)
    if callable(target):
        target = target()
    stats_for_verdict = latency_stats(create_ms)
    return {
        "budget_ms": float(budget_ms),
        "verdict": verdict(stats_for_verdict, budget_ms, verdict_statistic),
        "verdict_statistic": verdict_statistic if verdict_statistic.endswith("_ms") else f"{verdict_statistic}_ms",
        "create_face_template": create_summary,
        "match_templates": match_summary,
        "decode": _summary(decode_ms),
        "stages": _stage_breakdown(create_ms, stage_dicts, decode_ms),
        "operators": operators,
        "target": target,
        "images": {
            "n_files": len(image_paths),
            "n_profiled": len(decoded),
            "repeats": repeats,
            "warmup": warmup,
            "role": role.name,
            "skipped": skipped,
        },
        "process": {
            "threads_after_run": threads,
            "cpu_affinity_after_run": affinity,
            "thread_env": {k: os.environ.get(k) for k in THREAD_ENV},
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
    }


def estimate_for_target(
    create: dict[str, Any], fma_gflops_here: float | None, target: dict[str, Any] = TARGET_CPU
) -> dict[str, Any]:
    """An ESTIMATE of create-template latency on NIST's CPU, by FMA-throughput scaling.

    Parameters
    ----------
    create : dict
        The ``create_face_template`` summary from :func:`measure_implementation`. Its thread
        CPU times are used when present (wall time on a shared machine includes waiting for a
        core, which NIST's dedicated core does not), else its wall times.
    fma_gflops_here : float or None
        This core's measured single-precision AVX2 FMA peak, GFLOP/s (see
        :func:`frvt.perf.machine.measure_fma_peak`). None: no estimate.
    target : dict
        ``name``, ``base_ghz``, ``turbo_ghz``, ``flops_per_cycle``.

    Returns
    -------
    dict
        ``label`` ("ESTIMATE ..."), ``assumptions`` (list of str), the peaks, ``scale``
        (target time / time here: {turbo, base}) and the estimated ``median_ms`` / ``p99_ms``
        as {turbo, base} (a range: the turbo figure is the optimistic end).
    """
    label = f"ESTIMATE for {target['name']} (not measured; no such CPU here)"
    if not fma_gflops_here or not math.isfinite(fma_gflops_here) or fma_gflops_here <= 0:
        return {"label": label, "available": False, "reason": "no FMA throughput measured here"}
    peak = {k: target[f"{k}_ghz"] * target["flops_per_cycle"] for k in ("turbo", "base")}
    scale = {k: fma_gflops_here / v for k, v in peak.items()}
    source = create.get("cpu") or create
    basis = "thread CPU time" if create.get("cpu") else "wall time"
    return {
        "label": label,
        "available": True,
        "basis": basis,
        "fma_gflops_here": fma_gflops_here,
        "fma_gflops_target": peak,
        "scale": scale,
        "median_ms": {k: source["median_ms"] * s for k, s in scale.items()},
        "p99_ms": {k: source["p99_ms"] * s for k, s in scale.items()},
        "assumptions": [
            f"time scales with single-core AVX2 FMA peak: {fma_gflops_here:.1f} GFLOP/s measured here vs "
            f"{target['flops_per_cycle']} FLOPs/cycle x {target['turbo_ghz']}-{target['base_ghz']} GHz = "
            f"{peak['turbo']:.1f}-{peak['base']:.1f} GFLOP/s there",
            "the code reaches the same fraction of peak on both CPUs (same instructions: AVX2/FMA only; "
            "if anything here uses AVX-512, e.g. OpenCV or numpy dispatch, the estimate is optimistic)",
            "memory and caches do not change the picture (Broadwell has 256 KB L2 per core, this CPU more; "
            "memory-bound stages will scale worse than estimated)",
            "Broadwell-EP runs AVX2 code below its nominal clocks (AVX frequency offset): the base-clock "
            "figure is the realistic one, the turbo figure the optimistic one",
            f"based on the {basis} per call here, one thread; scalar code (Python, decoding) scales with "
            "clock and IPC rather than FMA throughput",
        ],
    }


# --- the fresh process ----------------------------------------------------------------------------


def _callable_name(obj: Callable[..., Any]) -> str:
    """``module:qualname`` of a module-level callable, so a fresh process can import it."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if module and qualname and "<" not in qualname:
        try:
            target = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
            if target is obj:
                return f"{module}:{qualname}"
        except (ImportError, AttributeError):
            pass
    raise ProfileError(
        f"clock {obj!r} cannot be sent to a fresh process: pass a module-level callable or isolate=False"
    )


def _import_name(name: str) -> Any:
    module, _, qualname = name.partition(":")
    target = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _run(request: dict[str, Any], clock: Callable[[], float]) -> dict[str, Any]:
    """Load, initialise, measure, estimate: the body of a profile, in the calling process."""
    from frvt.contract import load_implementation

    machine = machine_info()  # before the implementation can pin threads or start pools
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    try:
        impl = load_implementation(request["implementation"])
    except ValueError as exc:
        raise ProfileError(str(exc)) from exc
    with tempfile.TemporaryDirectory(prefix="frvt_profile_config_") as scratch:
        config_dir = _resolve_config_dir(impl, request.get("config_dir"), Path(scratch) / "config")
        t0 = time.perf_counter()
        status = impl.initialize(str(config_dir))
        init_s = time.perf_counter() - t0
        if not getattr(status, "ok", False):
            raise ProfileError(f"initialize({config_dir}) returned {status}")
        payload = measure_implementation(
            impl,
            request["images"],
            budget_ms=request["budget_ms"],
            warmup=request["warmup"],
            repeats=request["repeats"],
            max_matches=request["max_matches"],
            verdict_statistic=request["verdict_statistic"],
            top_operators=request["top_operators"],
            clock=clock,
            progress=request.get("progress", False),
        )
    payload = {
        "implementation": request["implementation"],
        "config_dir": str(config_dir),
        "initialize_s": init_s,
        **payload,
    }
    fma: dict[str, Any] | None = None
    if request.get("fma", True):
        try:
            fma = measure_fma_peak()
        except FmaPeakUnavailable as exc:
            fma = {"error": str(exc)}
    payload["fma"] = fma
    payload["estimate"] = estimate_for_target(payload["create_face_template"], (fma or {}).get("peak_gflops"))
    return versioned(SCHEMA, payload, machine=machine)


def profile_implementation(
    spec: str = DEFAULT_IMPLEMENTATION,
    config_dir: str | Path | None = None,
    images: str | Path | Sequence[str | Path] | None = None,
    budget_ms: float = 1000.0,
    warmup: int = 3,
    repeats: int = 1,
    max_matches: int = 1000,
    verdict_statistic: str = "median_ms",
    top_operators: int = 10,
    clock: Callable[[], float] = time.perf_counter,
    isolate: bool = True,
    fma: bool = True,
    progress: bool = False,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Profile an implementation named ``module:attribute``, NIST-style, and explain the time.

    Parameters
    ----------
    spec : str
        The implementation, ``module:attribute`` (default: ours).
    config_dir : path, optional
        Its config directory; default: its ``default_config_dir()``, else an empty directory.
    images : path or sequence of paths, optional
        See :func:`find_images`; default: the bundled validation set.
    budget_ms : float
        Limit per ``create_face_template`` call, milliseconds (NIST's current limit: 1500).
    warmup, repeats, max_matches, verdict_statistic, top_operators
        See :func:`measure_implementation`.
    clock : callable returning float seconds
        The wall clock. With ``isolate`` it must be importable by name (a module-level callable).
    isolate : bool
        Measure in a fresh process with one thread (True, as NIST does); False measures in this
        process (for tests and debugging: thread pools already started here stay started).
    fma : bool
        Also measure this core's AVX2 FMA peak (about 2 s) for the E5-2630 v4 estimate.
    progress : bool
        Progress bar on stderr.
    timeout_s : float, optional
        Give up on the fresh process after this many seconds.

    Returns
    -------
    dict
        Versioned JSON (schema ``frvt.profile/1``): ``budget_ms``, ``verdict`` (PASS/FAIL),
        ``verdict_statistic``; ``create_face_template``, ``match_templates`` and ``decode``, each
        with ``n``, ``median_ms``, ``p90_ms``, ``p99_ms``, ``max_ms``, ``mean_ms``, ``stdev_ms``,
        ``mad_ms``, ``unstable``, ``unstable_reasons`` and ``samples_ms``; ``stages`` (or None);
        ``operators`` (or None); ``target``; ``fma``; ``estimate``; ``images``; ``process``;
        ``machine`` (with the TVM version and the git revision).

    Raises
    ------
    ProfileError
        Bad input, failed ``initialize``, an exception crossing the contract, or a crashed or
        timed-out measuring process.
    """
    if not (isinstance(budget_ms, (int, float)) and math.isfinite(budget_ms) and budget_ms > 0):
        raise ProfileError(f"budget_ms = {budget_ms!r} is not a positive number of milliseconds")
    key = verdict_statistic if verdict_statistic.endswith("_ms") else f"{verdict_statistic}_ms"
    if key not in VERDICT_STATISTICS:
        raise ProfileError(f"verdict statistic {verdict_statistic!r} is not one of {', '.join(VERDICT_STATISTICS)}")
    if warmup < 0 or repeats < 1 or max_matches < 0:
        raise ProfileError(
            f"warmup={warmup}, repeats={repeats}, max_matches={max_matches}: need warmup >= 0, "
            "repeats >= 1, max_matches >= 0"
        )
    request = {
        "implementation": spec,
        "config_dir": str(Path(config_dir).resolve()) if config_dir is not None else None,
        "images": [str(p) for p in find_images(images)],
        "budget_ms": float(budget_ms),
        "warmup": warmup,
        "repeats": repeats,
        "max_matches": max_matches,
        "verdict_statistic": key,
        "top_operators": top_operators,
        "fma": fma,
        "progress": progress,
    }
    if not isolate:
        return _run(request, clock)
    request["clock"] = _callable_name(clock)
    env = dict(os.environ, **THREAD_ENV)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    with tempfile.TemporaryDirectory(prefix="frvt_profile_") as tmp:
        req_path, out_path = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req_path.write_text(json.dumps(request))
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "frvt.perf.profile", str(req_path), str(out_path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=None if progress else subprocess.PIPE,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as exc:
            raise ProfileError(f"the measuring process did not finish within {timeout_s} s") from exc
        if out_path.is_file():
            result = json.loads(out_path.read_text())
            if "error" in result and "schema" not in result:
                raise ProfileError(result["error"])
            return result
        tail = (proc.stderr or "").strip().splitlines()[-15:]
        raise ProfileError(
            f"the measuring process exited with status {proc.returncode} and no result"
            + (":\n" + "\n".join(tail) if tail else "")
        )


def _child_main(argv: Sequence[str]) -> int:
    """Entry point of the fresh process: ``python -m frvt.perf.profile REQUEST.json RESULT.json``."""
    from frvt.records import write_json

    req_path, out_path = argv
    request = json.loads(Path(req_path).read_text())
    try:
        result = _run(request, _import_name(request.get("clock", "time:perf_counter")))
    except ProfileError as exc:
        write_json(out_path, {"error": str(exc)})
        return 2
    write_json(out_path, result)
    return 0


# --- reading, comparing, presenting ------------------------------------------------------------


def load_profile(path: str | Path) -> dict[str, Any]:
    """Read a profile written by ``frvt profile --json``; raises ProfileError when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ProfileError(f"{path}: cannot read a profile: {exc}") from exc
    schema = data.get("schema", "") if isinstance(data, dict) else ""
    if not str(schema).startswith("frvt.profile/"):
        raise ProfileError(f"{path}: schema {schema!r} is not a frvt.profile result")
    return data


def save_profile(result: dict[str, Any], path: str | Path) -> Path:
    """Write a profile as JSON (atomically); returns the path."""
    from frvt.records import write_json

    write_json(path, result)
    return Path(path)


def compare_profiles(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-call and per-stage times of two profiles side by side.

    Parameters
    ----------
    a, b : dict
        Profiles (from :func:`profile_implementation` or :func:`load_profile`): a is the baseline.

    Returns
    -------
    list of dict
        One row per quantity: ``name``, ``a_ms``, ``b_ms`` and ``ratio`` = b / a (below 1: b is
        faster; NaN when either side lacks it or a is 0). Rows: create_face_template median, p90,
        p99, max; match_templates median and p99; decode median; then each stage's mean (the union
        of both profiles' stages, in a's order then b's).
    """
    rows = []

    def add(name: str, va: float | None, vb: float | None) -> None:
        fa = float(va) if va is not None else float("nan")
        fb = float(vb) if vb is not None else float("nan")
        ratio = fb / fa if (math.isfinite(fa) and math.isfinite(fb) and fa > 0) else float("nan")
        rows.append({"name": name, "a_ms": fa, "b_ms": fb, "ratio": ratio})

    for call, keys in (
        ("create_face_template", ("median_ms", "p90_ms", "p99_ms", "max_ms")),
        ("match_templates", ("median_ms", "p99_ms")),
        ("decode", ("median_ms",)),
    ):
        for k in keys:
            add(f"{call} {k[:-3]}", (a.get(call) or {}).get(k), (b.get(call) or {}).get(k))
    sa = (a.get("stages") or {}).get("stages") or {}
    sb = (b.get("stages") or {}).get("stages") or {}
    names = list(sa) + [n for n in sb if n not in sa]
    for n in names:
        add(f"stage {n} mean", (sa.get(n) or {}).get("mean_ms"), (sb.get(n) or {}).get("mean_ms"))
    return rows


def _fmt_ms(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def format_profile(result: dict[str, Any]) -> str:
    """The profile as text: latency table, verdict, stage breakdown, operators, estimate."""
    lines = []
    m = result.get("machine") or {}
    versions = m.get("versions") or {}
    lines.append(f"implementation {result.get('implementation')}  target {result.get('target')}")
    lines.append(
        f"machine: {m.get('cpu_model')}, {m.get('usable_cores')} usable core(s); TVM {versions.get('tvm')}; "
        f"git {(m.get('git_revision') or 'unknown')[:12]}{' (dirty)' if m.get('git_dirty') else ''}"
    )
    img = result.get("images") or {}
    lines.append(
        f"images: {img.get('n_profiled')} profiled of {img.get('n_files')} files "
        f"({len(img.get('skipped') or [])} undecodable), {img.get('repeats')} pass(es), "
        f"{img.get('warmup')} warm-up call(s) discarded; threads after run: "
        f"{(result.get('process') or {}).get('threads_after_run')}"
    )
    lines.append("")
    lines.append(f"{'per call (ms)':<22}{'n':>6}{'median':>10}{'p90':>10}{'p99':>10}{'max':>10}  spread")
    for call in ("create_face_template", "match_templates", "decode"):
        s = result.get(call) or {}
        spread = "UNSTABLE" if s.get("unstable") else "ok"
        lines.append(
            f"{call:<22}{s.get('n', 0):>6}{_fmt_ms(s.get('median_ms')):>10}{_fmt_ms(s.get('p90_ms')):>10}"
            f"{_fmt_ms(s.get('p99_ms')):>10}{_fmt_ms(s.get('max_ms')):>10}  {spread}"
        )
        cpu = s.get("cpu")
        if cpu:
            lines.append(
                f"{'  thread CPU time':<22}{'':>6}{_fmt_ms(cpu['median_ms']):>10}{_fmt_ms(cpu['p90_ms']):>10}"
                f"{_fmt_ms(cpu['p99_ms']):>10}{_fmt_ms(cpu['max_ms']):>10}"
            )
    proc = result.get("process") or {}
    affinity, usable = proc.get("cpu_affinity_after_run"), (result.get("machine") or {}).get("usable_cores")
    if affinity is not None and usable is not None and len(affinity) < usable:
        lines.append(
            f"  warning: the implementation pinned the process to CPU(s) {affinity} of {usable}: processes "
            "forked after initialize (as NIST's are) inherit the pin and share those CPU(s)"
        )
    ratio = (result.get("create_face_template") or {}).get("wall_to_cpu")
    if ratio is not None and math.isfinite(ratio) and ratio > 1.2:
        load = (result.get("process") or {}).get("load_average")
        lines.append(
            f"  warning: median wall time is {ratio:.2f}x the thread CPU time: the call waited for a core "
            f"(load average {load[0]:.1f} on {(result.get('machine') or {}).get('logical_cores')} cores)"
            if load
            else f"  warning: median wall time is {ratio:.2f}x the thread CPU time"
        )
    for call in ("create_face_template", "match_templates"):
        for reason in (result.get(call) or {}).get("unstable_reasons") or []:
            lines.append(f"  warning ({call}): {reason}")
    create = result.get("create_face_template") or {}
    stat = result.get("verdict_statistic", "median_ms")
    lines.append("")
    lines.append(
        f"VERDICT: {result.get('verdict')}  (create_face_template {stat[:-3]} "
        f"{_fmt_ms(create.get(stat))} ms vs budget {_fmt_ms(result.get('budget_ms'))} ms; "
        f"{create.get('n_over_budget', 0)} of {create.get('n', 0)} calls over budget)"
    )
    codes = create.get("return_codes") or {}
    if codes:
        lines.append("return codes: " + ", ".join(f"{k} {v}" for k, v in sorted(codes.items())))
    st = result.get("stages")
    lines.append("")
    if st:
        lines.append("stage breakdown (mean ms per create_face_template call):")
        lines.append(
            f"  {'(file decode by the harness, outside the call)':<48}{_fmt_ms(st.get('harness_decode_mean_ms')):>10}"
        )
        for name in st["order"]:
            s = st["stages"][name]
            lines.append(f"  {name:<48}{_fmt_ms(s['mean_ms']):>10}  {s['share']:6.1%}")
        total = sum(st["stages"][n]["mean_ms"] for n in st["order"])
        lines.append(f"  {'= mean create_face_template call':<48}{_fmt_ms(total):>10}")
        if st.get("calls_with_negative_other"):
            lines.append(
                f"  warning: in {st['calls_with_negative_other']} call(s) the stages add up to more than the call"
            )
    else:
        lines.append("stage breakdown: the implementation reports no last_stage_times")
    ops = result.get("operators")
    lines.append("")
    if ops is None:
        lines.append("operator profile: the implementation has no operator_profiles()")
    elif "error" in ops:
        lines.append(f"operator profile failed: {ops['error']}")
    else:
        for model, prof in ops["models"].items():
            lines.append(
                f"operators of {model}: {prof['total_us'] / 1000:.2f} ms in {prof['n_operators']} operators; "
                f"top {len(prof['top'])} = {prof['top_share']:.0%}"
            )
            for r in prof["top"]:
                lines.append(f"  {r['time_us'] / 1000:9.3f} ms {r['share']:6.1%}  x{r['calls']:<3} {r['name']}")
    est = result.get("estimate") or {}
    lines.append("")
    if est.get("available"):
        lines.append(f"{est['label']}:")
        lines.append(
            f"  create_face_template median {_fmt_ms(est['median_ms']['turbo'])}-{_fmt_ms(est['median_ms']['base'])} ms, "
            f"p99 {_fmt_ms(est['p99_ms']['turbo'])}-{_fmt_ms(est['p99_ms']['base'])} ms (turbo-base)"
        )
        for a in est["assumptions"]:
            lines.append(f"  assumes: {a}")
    elif est:
        lines.append(f"{est.get('label')}: unavailable ({est.get('reason')})")
    return "\n".join(lines)


def format_comparison(rows: list[dict[str, Any]], a_name: str = "A", b_name: str = "B") -> str:
    """Rows from :func:`compare_profiles` as a text table (ratio = B / A; < 1 means B is faster)."""
    width = max([len(r["name"]) for r in rows] + [10])
    lines = [f"{'ms':<{width}}{a_name[-14:]:>16}{b_name[-14:]:>16}{'B/A':>8}"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if math.isfinite(r["ratio"]) else "-"
        lines.append(f"{r['name']:<{width}}{_fmt_ms(r['a_ms']):>16}{_fmt_ms(r['b_ms']):>16}{ratio:>8}")
    return "\n".join(lines)


def plot_latency_histogram(result: dict[str, Any], path: str | Path) -> Path:
    """Histograms of per-call create-template and match times (PNG), the budget marked.

    Returns the path written. Uses matplotlib's Agg backend (no display needed).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    for ax, call in zip(fig.subplots(1, 2), ("create_face_template", "match_templates")):
        s = result.get(call) or {}
        samples = s.get("samples_ms") or []
        if samples:
            cpu = (s.get("cpu") or {}).get("samples_ms") or []
            bins = np.histogram_bin_edges(samples + cpu, bins=min(50, max(5, len(samples) // 3)))
            ax.hist(samples, bins=bins, color="tab:blue", alpha=0.8, label="wall time")
            if cpu:
                ax.hist(cpu, bins=bins, color="tab:gray", alpha=0.6, label="thread CPU time")
            for key, style in (("median_ms", "-"), ("p99_ms", "--")):
                ax.axvline(s[key], color="black", linestyle=style, label=f"{key[:-3]} {_fmt_ms(s[key])} ms")
        if call == "create_face_template":
            ax.axvline(result["budget_ms"], color="tab:red", label=f"budget {_fmt_ms(result['budget_ms'])} ms")
        ax.set_title(f"{call} (n={s.get('n', 0)})")
        ax.set_xlabel("milliseconds per call")
        ax.set_ylabel("calls")
        ax.legend(fontsize=8)
    fig.suptitle(f"{result.get('implementation')}: verdict {result.get('verdict')}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
