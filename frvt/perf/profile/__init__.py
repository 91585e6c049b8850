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
- Networks: when the implementation sets ``last_model_times`` (``{network: [thread CPU ms of
  each call]}``) and has ``model_dirs()`` (compiled-model directories with ``metadata.json`` and
  ``model.onnx``), each call is split into its networks and the rest, and the estimate for NIST's
  CPU is also made part by part (:mod:`frvt.perf.roofline`).
- Operators: when the implementation has ``operator_profiles(image)`` returning
  ``{model name: [{name, time_us, percent}, ...]}`` (ours: TVM's Relax VM, timed per VM call
  instruction), the top operators by time and their share; called after all timing is done.

The verdict compares the **median** wall time per ``create_face_template`` call with the budget
by default (``verdict_statistic``); p90, p99 and max are reported beside it. See
:mod:`validation.latency`.

Modules: :mod:`~frvt.perf.profile.measure` (the measurement, in the calling process),
:mod:`~frvt.perf.profile.estimate` (NIST's CPU), :mod:`~frvt.perf.profile.run` (the fresh
process), :mod:`~frvt.perf.profile.report` (JSON, text, comparison, histogram).
"""

from __future__ import annotations

from frvt.perf.profile.estimate import TARGET_CPU, estimate_for_target, estimate_parts_for_target
from frvt.perf.profile.measure import (
    DEFAULT_IMAGES,
    IMAGE_SUFFIXES,
    SUMMARY_KEYS,
    THREAD_ENV,
    ProfileError,
    _match_pairs,
    _resolve_config_dir,
    find_images,
    measure_implementation,
)
from frvt.perf.profile.report import (
    compare_profiles,
    format_comparison,
    format_profile,
    load_profile,
    plot_latency_histogram,
    save_profile,
)
from frvt.perf.profile.run import SCHEMA, profile_implementation

__all__ = [
    "DEFAULT_IMAGES",
    "IMAGE_SUFFIXES",
    "SCHEMA",
    "SUMMARY_KEYS",
    "TARGET_CPU",
    "THREAD_ENV",
    "ProfileError",
    "_match_pairs",
    "_resolve_config_dir",
    "compare_profiles",
    "estimate_for_target",
    "estimate_parts_for_target",
    "find_images",
    "format_comparison",
    "format_profile",
    "load_profile",
    "measure_implementation",
    "plot_latency_histogram",
    "profile_implementation",
    "save_profile",
]
