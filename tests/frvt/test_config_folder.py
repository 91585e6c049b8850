"""frvt.config_folder: the config folder moved away and handed over read-only, put back by
``restore`` or, after a killed run, by the next run; the audit hook and the mapped-file scan that
catch accesses to the original path."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from frvt.config_folder import (
    STATE_NAME,
    MovedConfig,
    mapped_files_under,
    restore_moved,
    restore_orphan,
)

ROOT = Path(__file__).resolve().parents[2]


def make_config(path: Path) -> Path:
    (path / "models").mkdir(parents=True)
    (path / "settings.cfg").write_text("size=24\n")
    (path / "models" / "weights.bin").write_bytes(bytes(range(256)))
    return path


def contents(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def writable(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def test_move_hides_the_original_and_hands_over_a_read_only_copy(tmp_path):
    config = make_config(tmp_path / "config")
    want = contents(config)
    moved = MovedConfig.move(config, tmp_path / "run")
    assert not config.exists() and moved.moved_to.parent == config.parent
    assert moved.moved_to.name.startswith(".config.frvt-moved-") and contents(moved.moved_to) == want
    assert moved.read_only_copy.name != "config" and contents(moved.read_only_copy) == want
    assert not any(writable(p) for p in [moved.read_only_copy, *moved.read_only_copy.rglob("*")])
    state = json.loads((tmp_path / "run" / STATE_NAME).read_text())
    assert state == {
        "original": str(config.resolve()),
        "moved_to": str(moved.moved_to),
        "read_only_copy": str(moved.read_only_copy),
    }
    assert moved.changes_to_copy() == []
    moved.restore()
    assert contents(config) == want and not moved.moved_to.exists() and not moved.read_only_copy.exists()
    assert not (tmp_path / "run" / STATE_NAME).exists()


def test_writes_to_the_copy_are_reported(tmp_path):
    moved = MovedConfig.move(make_config(tmp_path / "config"), tmp_path / "run")
    target = moved.read_only_copy / "settings.cfg"
    target.chmod(0o644)  # what an implementation running as the file's owner could do
    target.write_text("size=32\n")
    assert moved.changes_to_copy() == ["the read-only config copy changed: settings.cfg"]
    moved.restore()


def test_put_back_and_move_again_around_a_step_that_needs_the_original(tmp_path):
    config = make_config(tmp_path / "config")
    moved = MovedConfig.move(config, tmp_path / "run")
    moved.put_back()
    assert config.is_dir() and (tmp_path / "run" / STATE_NAME).exists()
    moved.move_again()
    assert not config.exists() and moved.moved_to.is_dir()
    moved.restore()
    assert config.is_dir()


def test_the_next_run_puts_back_a_folder_a_killed_run_left_moved(tmp_path):
    config = make_config(tmp_path / "config")
    want = contents(config)
    moved = MovedConfig.move(config, tmp_path / "run")  # ... and the run is killed here
    said: list[str] = []
    restore_moved(tmp_path / "run" / STATE_NAME, said.append)
    assert contents(config) == want and not moved.read_only_copy.exists()
    assert len(said) == 1 and "restored the config folder" in said[0] and moved.moved_to.name in said[0]
    assert not (tmp_path / "run" / STATE_NAME).exists()
    restore_moved(tmp_path / "run" / STATE_NAME, said.append)  # nothing left to do
    assert len(said) == 1


def test_an_orphan_is_put_back_only_when_it_is_the_only_one(tmp_path):
    config = make_config(tmp_path / "config")
    moved = MovedConfig.move(config, tmp_path / "run-a")
    (tmp_path / "run-a" / STATE_NAME).unlink()  # the state file is lost too
    said: list[str] = []
    restore_orphan(config, said.append)
    assert config.is_dir() and not moved.moved_to.exists() and len(said) == 1
    first = MovedConfig.move(config, tmp_path / "run-b")
    second_sibling = config.parent / ".config.frvt-moved-000000000000"
    second_sibling.mkdir()
    restore_orphan(config, said.append)  # two candidates: which one is the original is unknown
    assert not config.exists() and len(said) == 1
    first.restore()


def test_the_audit_hook_records_reads_of_the_original_and_writes_to_the_copy(tmp_path):
    original, copy, report = tmp_path / "original", tmp_path / "copy", tmp_path / "report.txt"
    make_config(original)
    make_config(copy)
    script = textwrap.dedent(f"""
        import os
        from frvt.config_folder import install_watch
        install_watch(({str(original)!r},), ({str(copy)!r},), {str(report)!r})
        open({str(original / "settings.cfg")!r}).read()
        os.listdir({str(original / "models")!r})
        open({str(copy / "new.txt")!r}, "w").close()
        open({str(copy / "settings.cfg")!r}).read()  # reading the copy is what it is for
    """)
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert report.read_text().splitlines() == [
        f"opened {original / 'settings.cfg'}",
        f"listed {original / 'models'}",
        f"opened for writing {copy / 'new.txt'}",
    ]


def test_mapped_files_under_finds_the_libraries_a_process_loaded():
    numpy_dir = str(Path(np.__file__).resolve().parent)
    hits = mapped_files_under(os.getpid(), [numpy_dir])
    assert hits and all(h.startswith(f"mapped {numpy_dir}{os.sep}") for h in hits)
    assert any(h.endswith(".so") for h in hits)
    assert mapped_files_under(os.getpid(), [str(ROOT / "data")]) == []
