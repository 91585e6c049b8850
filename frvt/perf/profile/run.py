"""A profile in a fresh process on one thread (``python -m frvt.perf.profile``): load,
initialise, measure, estimate; the request and the result travel as JSON files."""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence


from frvt import settings
from frvt.contract import DEFAULT_IMPLEMENTATION
from frvt.perf.profile.estimate import estimate_for_target, estimate_parts_for_target, network_costs_of
from frvt.perf.profile.measure import ProfileError, _resolve_config_dir, find_images, measure_implementation
from frvt.perf.machine import (
    FmaPeakUnavailable,
    machine_info,
    measure_fma_peak,
    measure_read_bandwidth,
    versioned,
)
from validation.latency import VERDICT_STATISTICS


SCHEMA = "frvt.profile/1"


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
        costs = network_costs_of(impl) if request.get("fma", True) else {}  # while the config directory exists
    payload = {
        "implementation": request["implementation"],
        "config_dir": str(config_dir),
        "initialize_s": init_s,
        **payload,
    }
    fma: dict[str, Any] | None = None
    bandwidth: dict[str, Any] | None = None
    if request.get("fma", True):
        try:
            fma = measure_fma_peak()
        except FmaPeakUnavailable as exc:
            fma = {"error": str(exc)}
        bandwidth = measure_read_bandwidth()
    payload["fma"] = fma
    payload["memory_bandwidth"] = bandwidth
    payload["estimate"] = estimate_for_target(payload["create_face_template"], (fma or {}).get("peak_gflops"))
    payload["estimate_by_part"] = estimate_parts_for_target(
        payload.get("networks"),
        costs,
        (fma or {}).get("peak_gflops"),
        (bandwidth or {}).get("read_gbps"),
    )
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
    env = settings.single_thread_env()
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
