"""The default template at two revisions of the repository, side by side: speed and outputs.

    python scripts/template_speed.py HEAD~1 WORKTREE --repeats 5 --json docs/results/template_speed.json

Each revision (a git revision, or ``WORKTREE`` for the files as they are now) runs in its own
process, from a checkout of that revision (``git worktree``, removed at the end), with one thread
(``frvt.settings.limit_threads_by_default``) and its own default config directory. The parent
sends both processes the same image in turn, call by call, so both see the same machine
conditions; each times ``create_face_template`` in thread CPU time (the harness's decode is
outside the call) and returns the template. Printed: the median and p90 per revision, the ratio
of the medians, each revision's median per stage (``last_stage_times``) and network
(``last_model_times``), the return codes, and the largest difference between the two revisions'
templates (the embeddings as floats; 0 means the same template).

The images are the bundled validation set's (``data/validation/images``) unless ``--images``
names a folder.
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from frvt.perf.machine import machine_info  # noqa: E402

_SERVER = r"""
import os, pickle, sys, time
out = os.fdopen(os.dup(1), "wb")  # the answers; anything else printed goes to stderr
os.dup2(2, 1)
sys.stdout = sys.stderr
from frvt.settings import limit_threads_by_default
limit_threads_by_default()
import numpy as np
from frvt.contract import TemplateRole
from frvt.driver import decode_image
from implementation import template as tpl
from implementation.pipeline import FaceVerifier

verifier = FaceVerifier()
status = verifier.initialize(str(verifier.default_config_dir()))
pickle.dump(("ready", status.code.name, status.info, verifier.version), out)
out.flush()
for line in sys.stdin:
    try:
        image = decode_image(line.rstrip("\n"))
    except Exception as exc:  # an unreadable file is not timed
        pickle.dump((None, f"unreadable: {exc}", None, {}, {}), out)
        out.flush()
        continue
    start = time.thread_time()
    result = verifier.create_face_template([image], TemplateRole.Enrollment_11)
    ms = (time.thread_time() - start) * 1e3
    decoded = tpl.decode(result.template, None)
    embedding = decoded.embedding.tolist() if decoded.has_face else None
    stages = dict(verifier.last_stage_times)
    models = {k: list(v) for k, v in verifier.last_model_times.items()}
    pickle.dump((ms, result.status.code.name, embedding, stages, models), out)
    out.flush()
"""


def _checkout(revision: str, scratch: Path) -> Path:
    """A directory holding ``revision``'s files (the repository itself for ``WORKTREE``)."""
    if revision == "WORKTREE":
        return REPO
    path = scratch / revision.replace("/", "_").replace("~", "_")
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), revision], check=True)
    return path


class _Server:
    """One revision's implementation in its own process."""

    def __init__(self, revision: str, root: Path) -> None:
        self.revision = revision
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVER], cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False
        )
        ready = pickle.load(self.process.stdout)
        if ready[1] != "Success":
            raise SystemExit(f"{revision}: initialize failed: {ready[1]} {ready[2]}")
        self.version = ready[3]

    def call(self, image: Path):
        self.process.stdin.write(f"{image}\n".encode())
        self.process.stdin.flush()
        return pickle.load(self.process.stdout)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def _images(folder: Path) -> list[Path]:
    suffixes = {".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp"}
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("revisions", nargs=2, help="two git revisions (WORKTREE: the files as they are)")
    parser.add_argument("--images", type=Path, default=REPO / "data" / "validation" / "images")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the images")
    parser.add_argument("--warmup", type=int, default=3, help="calls per revision before timing")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    images = _images(args.images)
    if not images:
        raise SystemExit(f"no images under {args.images}")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        roots = [_checkout(rev, Path(scratch)) for rev in args.revisions]
        try:
            servers = [_Server(rev, root) for rev, root in zip(args.revisions, roots)]
            images = [image for image in images if servers[0].call(image)[0] is not None]
            for server in servers:
                for image in images[: args.warmup]:
                    server.call(image)
            times = {s.revision: [] for s in servers}
            stages = {s.revision: {} for s in servers}
            codes = {s.revision: {} for s in servers}
            embeddings = {s.revision: {} for s in servers}
            for repeat in range(args.repeats):
                for i, image in enumerate(images):
                    # alternate which revision goes first, so neither always follows the other
                    order = servers if (i + repeat) % 2 == 0 else servers[::-1]
                    for server in order:
                        ms, code, embedding, stage_ms, model_ms = server.call(image)
                        if ms is None:
                            continue
                        times[server.revision].append(ms)
                        for name, value in stage_ms.items():
                            stages[server.revision].setdefault(name, []).append(value)
                        for name, calls in model_ms.items():
                            stages[server.revision].setdefault(f"network {name}", []).append(sum(calls))
                        if repeat == 0:
                            codes[server.revision][code] = codes[server.revision].get(code, 0) + 1
                            embeddings[server.revision][str(image)] = embedding
            for server in servers:
                server.close()
        finally:
            for root in roots:
                if root != REPO:
                    subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(root)], check=False)

    first, second = args.revisions
    for server in servers:
        rev = server.revision
        results[rev] = {
            "version": server.version,
            "median_ms": statistics.median(times[rev]),
            "p90_ms": float(np.percentile(times[rev], 90)),
            "calls": len(times[rev]),
            "return_codes": codes[rev],
            "stage_median_ms": {k: statistics.median(v) for k, v in stages[rev].items()},
        }
    differences = []
    one_failed = 0
    for name, a in embeddings[first].items():
        b = embeddings[second][name]
        if (a is None) != (b is None):
            one_failed += 1
        elif a is not None:
            differences.append(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))))
    summary = {
        "schema": "frvt.template_speed/1",
        "machine": machine_info(),
        "images": str(args.images),
        "repeats": args.repeats,
        "revisions": results,
        "ratio": results[second]["median_ms"] / results[first]["median_ms"],
        "max_template_difference": max(differences) if differences else None,
        "templates_compared": len(differences),
        "failed_in_one_revision_only": one_failed,
    }
    for rev, r in results.items():
        print(f"{rev}: {r['version']}")
        print(f"  create_face_template median {r['median_ms']:.2f} ms, p90 {r['p90_ms']:.2f} ms ({r['calls']} calls)")
        print("  " + ", ".join(f"{k} {v:.2f}" for k, v in r["stage_median_ms"].items()))
        print(f"  return codes {r['return_codes']}")
    print(f"ratio {second} / {first}: {summary['ratio']:.3f}")
    print(
        f"templates: largest difference {summary['max_template_difference']} over "
        f"{summary['templates_compared']}, {one_failed} made by one revision only"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"json: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
