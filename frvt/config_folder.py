"""The config folder as NIST's validation treats it: moved away, handed over read-only, restored.

NIST's run renames the submission's config folder to a random name and makes it read-only, so an
implementation that opens its files by a hard-coded path fails there. ``frvt validate`` does the
same for the whole run, stricter: the original folder is renamed to a hidden sibling
(``.<name>.frvt-moved-<random>``) before any worker starts, so that the original path does not
exist for native code either; the implementation gets a read-only copy under another random name;
and the original is renamed back when the run ends, whatever ends it. A state file written before
the rename lets the next run (or ``--resume``) put back a folder that a killed run left moved away.

Python-level accesses to the original path (opens, listings, renames) are also recorded from
inside each worker by an audit hook, and writes to the read-only copy are detected by comparing it
before and after the run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from frvt.records import write_text_atomic

STATE_NAME = "config-moved.json"
_MOVED_MARK = ".frvt-moved-"


def _moved_siblings(original: Path) -> list[Path]:
    return sorted(original.parent.glob(f".{original.name}{_MOVED_MARK}*"))


def restore_moved(state_path: Path, say: Callable[[str], None]) -> None:
    """Put back a config folder a previous run left moved away (no-op when there is none)."""
    if not state_path.exists():
        return
    try:
        state = json.loads(state_path.read_text())
        original, moved = Path(state["original"]), Path(state["moved_to"])
    except (OSError, ValueError, KeyError):
        state_path.unlink(missing_ok=True)
        return
    if moved.exists() and not original.exists():
        os.rename(moved, original)
        say(f"restored the config folder {original} (a previous run was stopped while it was moved to {moved.name})")
    state_path.unlink(missing_ok=True)
    copy = state.get("read_only_copy")
    if copy:
        remove_read_only(Path(copy))


def restore_orphan(original: Path, say: Callable[[str], None]) -> None:
    """If ``original`` is missing and exactly one moved-away sibling exists, rename it back."""
    if original.exists():
        return
    siblings = _moved_siblings(original)
    if len(siblings) == 1:
        os.rename(siblings[0], original)
        say(f"restored the config folder {original} from {siblings[0].name}, left there by a run that was stopped")


def make_read_only(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    for dirpath, _, _ in os.walk(root, topdown=False):
        p = Path(dirpath)
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def remove_read_only(root: Path) -> None:
    if not root.exists():
        return
    for dirpath, _, filenames in os.walk(root):
        Path(dirpath).chmod(0o755)
        for name in filenames:
            try:
                (Path(dirpath) / name).chmod(0o644)
            except OSError:
                pass
    shutil.rmtree(root, ignore_errors=True)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


@dataclass
class MovedConfig:
    """A config folder moved out of the way, and the read-only copy the implementation gets."""

    original: Path
    moved_to: Path
    read_only_copy: Path
    state_path: Path
    before: dict

    @classmethod
    def move(cls, original: Path, run_dir: Path) -> "MovedConfig":
        original = original.resolve()
        token = secrets.token_hex(6)
        moved = original.parent / f".{original.name}{_MOVED_MARK}{token}"
        copy = run_dir / f"cfg{secrets.token_hex(8)}"
        state_path = run_dir / STATE_NAME
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(original, copy, symlinks=False)
        make_read_only(copy)
        write_text_atomic(
            state_path,
            json.dumps({"original": str(original), "moved_to": str(moved), "read_only_copy": str(copy)}) + "\n",
        )
        os.rename(original, moved)
        return cls(original, moved, copy, state_path, snapshot(copy))

    def put_back(self) -> None:
        """Rename the original back (temporarily or at the end); the state file stays until :meth:`restore`."""
        if self.moved_to.exists() and not self.original.exists():
            os.rename(self.moved_to, self.original)

    def move_again(self) -> None:
        if self.original.exists() and not self.moved_to.exists():
            os.rename(self.original, self.moved_to)

    def changes_to_copy(self) -> list[str]:
        try:
            after = snapshot(self.read_only_copy)
        except OSError:
            return []
        changed = sorted({name for name, _ in set(after.items()) ^ set(self.before.items())})
        return [f"the read-only config copy changed: {name}" for name in changed[:10]]

    def restore(self) -> None:
        self.put_back()
        self.state_path.unlink(missing_ok=True)
        remove_read_only(self.read_only_copy)


# ---------------------------------------------------------------------------------------------
# The audit hook installed in each worker (an audit hook cannot be removed: workers only).


class _Watch:
    def __init__(self, read_forbidden: tuple[str, ...], write_forbidden: tuple[str, ...], report_path: str) -> None:
        self.read_forbidden, self.write_forbidden = read_forbidden, write_forbidden
        self.fd = os.open(report_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.busy = False

    @staticmethod
    def _under(path, prefixes: tuple[str, ...]) -> str | None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, (str, os.PathLike)):
            return None
        p = os.path.abspath(os.fspath(path))
        for prefix in prefixes:
            if p == prefix or p.startswith(prefix + os.sep):
                return p
        return None

    def report(self, text: str) -> None:
        os.write(self.fd, (text.replace("\n", " ") + "\n").encode())

    def __call__(self, event: str, args: tuple) -> None:
        if self.busy:
            return
        self.busy = True
        try:
            if event == "open" and args:
                path, mode, flags = (list(args) + [None, None])[:3]
                hit = self._under(path, self.read_forbidden)
                if hit:
                    self.report(f"opened {hit}")
                writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
                )
                hit = writing and self._under(path, self.write_forbidden)
                if hit:
                    self.report(f"opened for writing {hit}")
            elif event in ("os.listdir", "os.scandir") and args:
                hit = self._under(args[0], self.read_forbidden)
                if hit:
                    self.report(f"listed {hit}")
            elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.chmod", "os.truncate") and args:
                for a in args[:2]:
                    hit = self._under(a, self.write_forbidden + self.read_forbidden)
                    if hit:
                        self.report(f"{event} {hit}")
        finally:
            self.busy = False


def install_watch(read_forbidden: tuple[str, ...], write_forbidden: tuple[str, ...], report_path: str) -> None:
    """Record Python-level accesses to ``read_forbidden`` and writes under ``write_forbidden``."""
    sys.addaudithook(_Watch(read_forbidden, write_forbidden, report_path))


def mapped_files_under(pid: int, prefixes: list[str]) -> list[str]:
    """Files under ``prefixes`` that process ``pid`` has mapped (shared libraries loaded natively)."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text().splitlines()
    except OSError:
        return []
    hits = set()
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) == 6:
            path = parts[5].strip()
            if any(path == p or path.startswith(p + os.sep) for p in prefixes):
                hits.add(f"mapped {path}")
    return sorted(hits)
