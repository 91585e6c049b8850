"""Performance tools: machine facts, the runtime shoot-out (``frvt bench``) and the per-call
latency profile (``frvt profile``)."""
