"""The ``frvt`` command line: one module per command, each a thin layer over a library call."""

from frvt.cli.app import app

__all__ = ["app"]
