"""``python -m frvt.perf.profile REQUEST.json RESULT.json``: the fresh measuring process of a profile."""

import sys

from frvt.perf.profile.run import _child_main

raise SystemExit(_child_main(sys.argv[1:]))
