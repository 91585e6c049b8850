"""``python -m frvt.cli``: the ``frvt`` command without its console script."""

from frvt.cli import app

app(prog_name="frvt")
