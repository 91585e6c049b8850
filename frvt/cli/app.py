"""The typer application; each command module registers itself on ``app``."""

import importlib

import typer

app = typer.Typer(
    help="NIST FRVT/FRTE 1:1 face verification toolkit: validate, score, profile, compile, bench.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """NIST FRVT/FRTE 1:1 face verification toolkit."""


# Each module below owns one command (or group) and registers it on ``app`` when imported.
for _name in ("validate", "score", "enroll", "profile", "compile", "bench", "lfw", "submission", "report"):
    try:
        importlib.import_module(f"frvt.cli.{_name}")
    except ModuleNotFoundError as exc:  # a command still being written
        if exc.name != f"frvt.cli.{_name}":
            raise
