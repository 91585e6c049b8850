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
    The cap that reaches every library is the CPUID cap (``frvt/perf/bench/cpuid_cap.c``, preloaded):
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

from frvt.perf.bench.cpuid_cap import (
    _CPUID_CAP_PROBE,
    CPUID_CAP_ENV,
    CPUID_CAP_SOURCE,
    _cpuid_cap_state,
    build_cpuid_cap,
)
from frvt.perf.bench.inputs import make_inputs, onnxruntime_session
from frvt.perf.bench.models import (
    AVX2_CAPS,
    DEFAULT_IMAGE,
    GROUP_TARGET,
    GROUPS,
    IRESNET50_PATH,
    MODELS_DIR,
    RATIO_RUNTIME,
    REFERENCE_RUNTIME,
    REPO_ROOT,
    RUNTIMES,
    SCHEMA,
    THREAD_ENV,
    BenchError,
    ModelSpec,
    builtin_models,
    model_macs,
    model_weight_bytes,
    resolve_models,
)
from frvt.perf.bench.report import TABLE_HEADER, format_markdown, format_table, save_result
from frvt.perf.bench.run import (
    _group_env,
    _make_row,
    _tvm_artefact,
    add_memory_floor,
    add_ratios,
    add_throughput,
    run_benchmark,
)
from frvt.perf.bench.runtimes import LoadedRuntime, dlib_weights
from frvt.perf.bench.timing import InterleavedTimes, output_difference, schedule_rounds, time_interleaved
from frvt.perf.bench.worker import measure_group

__all__ = [
    "AVX2_CAPS",
    "BenchError",
    "DEFAULT_IMAGE",
    "GROUPS",
    "GROUP_TARGET",
    "IRESNET50_PATH",
    "MODELS_DIR",
    "ModelSpec",
    "RATIO_RUNTIME",
    "REFERENCE_RUNTIME",
    "REPO_ROOT",
    "RUNTIMES",
    "SCHEMA",
    "THREAD_ENV",
    "builtin_models",
    "model_macs",
    "model_weight_bytes",
    "resolve_models",
    "make_inputs",
    "onnxruntime_session",
    "InterleavedTimes",
    "output_difference",
    "schedule_rounds",
    "time_interleaved",
    "CPUID_CAP_ENV",
    "CPUID_CAP_SOURCE",
    "_CPUID_CAP_PROBE",
    "_cpuid_cap_state",
    "build_cpuid_cap",
    "LoadedRuntime",
    "dlib_weights",
    "measure_group",
    "_group_env",
    "_make_row",
    "_tvm_artefact",
    "add_memory_floor",
    "add_ratios",
    "add_throughput",
    "run_benchmark",
    "TABLE_HEADER",
    "format_markdown",
    "format_table",
    "save_result",
]
