"""``python -m frvt.perf.bench SPEC.json OUT.json``: the measuring process of one model in one ISA group."""

import sys

from frvt.perf.bench.worker import _worker_main

raise SystemExit(_worker_main(sys.argv[1:]))
