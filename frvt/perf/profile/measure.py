"""Measuring an implementation in whatever process calls it: the images, the config directory,
per-call latency of ``create_face_template`` and ``match_templates`` with the decode timed apart,
the stage breakdown and the operator profiles."""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from frvt import settings
from frvt.contract import ReturnCode, TemplateRole
from validation.latency import latency_stats, time_calls, verdict


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


class ProfileError(RuntimeError):
    """The profile could not be made: bad input (no images, bad implementation name, failed
    ``initialize``) or the measuring process failed. The message names the cause."""


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


def _network_breakdown(
    call_ms: list[float], cpu_ms: list[float], model_dicts: list[dict[str, list[float]] | None]
) -> dict[str, Any] | None:
    """Mean milliseconds per call spent in each network and mean network calls per call, from
    the implementation's ``last_model_times`` (``{network: [thread CPU ms of each network
    call]}``), beside the mean call's thread CPU time (its wall time when CPU time was not taken)."""
    if not any(model_dicts):
        return None
    names = sorted({name for d in model_dicts for name in (d or {})})
    n = len(call_ms)
    return {
        "mean_ms": {name: sum(sum((d or {}).get(name, [])) for d in model_dicts) / n for name in names},
        "calls": {name: sum(len((d or {}).get(name, [])) for d in model_dicts) / n for name in names},
        "mean_call_ms": float(np.mean(cpu_ms if len(cpu_ms) == n else call_ms)),
        "basis": "thread CPU time" if len(cpu_ms) == n else "wall time",
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
    model_dicts: list[dict[str, list[float]] | None] = []
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
        models = getattr(impl, "last_model_times", None)
        model_dicts.append(
            {str(k): [float(t) for t in v] for k, v in models.items()} if isinstance(models, dict) else None
        )
        if cpu is not None:
            cpu_ms.append(cpu)
        name = ReturnCode(result.status.code).name
        codes[name] = codes.get(name, 0) + 1
        if i < n_first_pass:
            templates.append(bytes(result.template))
        if bar is not None:
            bar.update()

    def create(images, role_):
        for attribute in ("last_stage_times", "last_model_times"):  # a stale dict must not be read as this call's
            if hasattr(impl, attribute):
                try:
                    setattr(impl, attribute, {})
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
        "networks": _network_breakdown(create_ms, cpu_ms, model_dicts),
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
