"""Compilation targets: named CPUs (the Broadwell of NIST's machines) and target dicts for TVM.

No TVM import except to resolve ``"native"``.
"""

from __future__ import annotations

import json


TARGET_ALIASES: dict[str, dict] = {
    "broadwell": {"kind": "llvm", "mcpu": "broadwell", "num-cores": 1},
}
"""Named targets; ``"native"`` is resolved at run time from LLVM's host CPU name."""


def parse_target(spec: str | dict) -> dict:
    """Turn a target name or JSON into a TVM target dict.

    Parameters
    ----------
    spec : str or dict
        ``"broadwell"`` (Xeon E5-2630 v4: AVX2 + FMA), ``"native"`` (this machine's CPU, as LLVM
        names it), a JSON object string such as ``'{"kind": "llvm", "mcpu": "skylake"}'``, or a
        dict. ``num-cores`` defaults to 1 (the budget is per call on one thread).

    Returns
    -------
    dict
        A target dict accepted by ``tvm.target.Target``.

    Examples
    --------
    >>> parse_target("broadwell")
    {'kind': 'llvm', 'mcpu': 'broadwell', 'num-cores': 1}
    >>> parse_target('{"kind": "llvm", "mcpu": "skylake"}')
    {'kind': 'llvm', 'mcpu': 'skylake', 'num-cores': 1}
    """
    if isinstance(spec, dict):
        target = dict(spec)
    elif spec in TARGET_ALIASES:
        target = dict(TARGET_ALIASES[spec])
    elif spec == "native":
        import tvm

        host = str(tvm.get_global_func("tvm.codegen.llvm.GetHostCPUName")())
        target = {"kind": "llvm", "mcpu": host}
    elif isinstance(spec, str) and spec.lstrip().startswith("{"):
        try:
            target = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise ValueError(f"target {spec!r} is not valid JSON: {exc}") from exc
        if not isinstance(target, dict) or "kind" not in target:
            raise ValueError(f"target {spec!r} must be a JSON object with a 'kind'")
    else:
        raise ValueError(f"unknown target {spec!r}: use 'broadwell', 'native' or a JSON object string")
    target.setdefault("num-cores", 1)
    return target


def target_name(target: dict) -> str:
    """Short name of a target for directory names: its ``mcpu``, else its ``kind``.

    >>> target_name({"kind": "llvm", "mcpu": "broadwell", "num-cores": 1})
    'broadwell'
    """
    return str(target.get("mcpu") or target.get("kind"))
