"""Measure this core's single-precision AVX2 FMA peak (GFLOP/s, one thread) and print it as JSON.

    python scripts/fma_peak.py [--repeats 7] [--seconds 0.2] [--wall]

Timed with the thread's CPU time by default (on a shared machine the wall clock also counts the
time spent waiting for a core); ``--wall`` times with ``perf_counter`` instead.

The number scales latencies to the Xeon E5-2630 v4 in ``frvt profile`` (32 FLOPs/cycle at
2.2-3.1 GHz: 70.4-99.2 GFLOP/s). Best of the repeats is the peak; other load only slows a repeat.
"""

import argparse
import json
import os
import time

from frvt.perf.machine import AVX2_FLOPS_PER_CYCLE, machine_info, measure_fma_peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=0.2, help="duration of each repeat")
    parser.add_argument("--wall", action="store_true", help="time with the wall clock, not thread CPU time")
    args = parser.parse_args()
    clock = time.perf_counter if args.wall else time.thread_time
    result = measure_fma_peak(seconds_per_repeat=args.seconds, repeats=args.repeats, clock=clock)
    result["clock"] = clock.__name__
    info = machine_info()
    result["cpu_model"] = info["cpu_model"]
    result["load_average_1min"] = os.getloadavg()[0]
    result["target_e5_2630_v4_gflops"] = {
        "base_2.2GHz": 2.2 * AVX2_FLOPS_PER_CYCLE,
        "turbo_3.1GHz": 3.1 * AVX2_FLOPS_PER_CYCLE,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
