"""The TVM toolchain: ONNX -> Relax -> tuned, exported module; tuning databases, schedules, passes,
Winograd convolutions, and the dlib model converter. Never imported on the template path: the
runtime (``implementation.tvm_runtime``) only loads what this package exported."""


class CompileError(RuntimeError):
    """The model could not be imported, tuned or compiled."""
