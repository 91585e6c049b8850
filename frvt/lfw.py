"""``frvt lfw``: the LFW View-2 benchmark (pairs.txt, 10 folds) for any implementation.

Templates are made once per image through the NIST contract in worker processes, written to a
cache folder as they come (``<cache>/templates/<image id>.tmpl`` plus one JSON line per image in
``<cache>/templates.jsonl``), so a killed run resumes where it stopped. Pairs are then compared with
``match_templates``; a comparison with a failed template scores -1 (a non-match, as NIST counts it).

Reported: mean accuracy +/- standard deviation over the 10 folds (threshold chosen on 9 folds,
accuracy on the 10th), TAR at FAR = 1e-3 over all 3,000 impostor pairs, failures to enrol,
images per second (wall clock, all workers) and per-call create-template time.

With a template store (``frvt enroll`` of ``lfw-deepfunneled``) the templates come from it instead:
no template is made, the implementation and config directory are the store's, and the same
templates serve View-2 and ``frvt score --all-vs-all``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from frvt import settings
from frvt.contract import DEFAULT_IMPLEMENTATION, ImageLabel, ReturnCode, TemplateRole, load_implementation
from frvt.driver import template_outcome
from frvt.records import ImageEntry, write_bytes_atomic
from frvt.worker import WorkerLimits, WorkerPool

SCHEMA = "frvt.lfw/1"


def image_id(name: str, number: int) -> str:
    """LFW's file stem for a person's n-th image, e.g. ``Abel_Pacheco_0001``."""
    return f"{name}_{number:04d}"


def pair_ids(pair) -> tuple[str, str]:
    return image_id(pair.name1, pair.number1), image_id(pair.name2, pair.number2)


def image_entries(image_root: Path, ids: list[str]) -> list[ImageEntry]:
    entries = []
    for i, tid in enumerate(ids):
        name = tid.rsplit("_", 1)[0]
        path = image_root / name / f"{tid}.jpg"
        entries.append(ImageEntry(tid, path, str(path), ImageLabel.FaceWild, name, i + 1))
    return entries


def all_image_ids(image_root: Path) -> list[str]:
    return sorted(p.stem for p in image_root.glob("*/*.jpg"))


def make_templates(
    pool: WorkerPool,
    entries: list[ImageEntry],
    cache: Path,
    workers: int,
    progress: bool,
    chunk: int = 256,
    say: Callable[[str], None] = lambda s: None,
) -> tuple[dict[str, dict], float, int]:
    """Templates for ``entries`` into ``cache``, resuming; returns per-id records, seconds spent, images made."""
    log_path = cache / "templates.jsonl"
    done: dict[str, dict] = {}
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            try:
                rec = json.loads(line)
                if (cache / "templates" / "enroll" / f"{rec['id']}.tmpl").exists():
                    done[rec["id"]] = rec
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut by a kill: that image is redone
    todo = [e for e in entries if e.id not in done]
    if done:
        say(f"resuming: {len(done)} templates on disk, {len(todo)} to make")
    spent = 0.0
    with log_path.open("a") as log:
        if log_path.stat().st_size and not log_path.read_bytes().endswith(b"\n"):
            log.write("\n")  # end a line cut by a kill, or the next record would join it
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            t0 = time.perf_counter()
            outcomes = []

            def on_result(index: int, reply, part=part, outcomes=outcomes) -> None:
                entry = part[index]
                if not isinstance(reply, dict) or "template" not in reply:
                    reply_template = b""
                else:
                    reply_template = reply["template"]
                write_bytes_atomic(cache / "templates" / "enroll" / f"{entry.id}.tmpl", reply_template)
                outcomes.append(template_outcome(entry, reply, None))

            requests = [
                (
                    i,
                    "template",
                    {"id": e.id, "images": [(str(e.path), int(e.label))], "role": int(TemplateRole.Enrollment_11)},
                )
                for i, e in enumerate(part)
            ]
            pool.run(requests, workers, on_result)
            spent += time.perf_counter() - t0
            for o in outcomes:
                info = (o.failure or {}).get("detail") or o.info or o.exception or ""
                rec = {"id": o.id, "code": o.row.code, "size": o.row.size, "ms": o.elapsed_ms, "info": info}
                done[o.id] = rec
                log.write(json.dumps(rec) + "\n")
            log.flush()
    return done, spent, len(todo)


def run_lfw(
    data_dir: str | Path,
    implementation: str = DEFAULT_IMPLEMENTATION,
    config_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    workers: int = 2,
    all_images: bool = False,
    progress: bool = True,
    say: Callable[[str], None] = lambda s: None,
    store: str | Path | None = None,
) -> dict:
    """Run the View-2 protocol; returns the result dict (fractions, not percent).

    ``store``: read the templates from this template store (made by ``frvt enroll``; ids whose last
    path part is LFW's image stem) instead of making them; ``implementation`` and ``config_dir``
    default to the store's, and another implementation than the store's is refused (ValueError).
    """
    from frvt.validate import resolve_config_dir
    from validation.lfw_protocol import lfw_10fold, read_pairs
    from validation.metrics import tar_at_far

    data_dir = Path(data_dir)
    image_root = data_dir / "lfw-deepfunneled"
    pairs = read_pairs(data_dir / "pairs.txt")
    ids_of = [pair_ids(p) for p in pairs]
    ids = all_image_ids(image_root) if all_images else sorted({i for ab in ids_of for i in ab})
    stored = None
    if store is not None:
        stored = _store_templates(store, ids, implementation, config_dir)
        implementation, config_dir = stored["implementation"], stored["config_dir"]
    impl = load_implementation(implementation)
    config = resolve_config_dir(impl, config_dir)
    status = impl.initialize(str(config))
    if status.code != ReturnCode.Success:
        raise RuntimeError(f"initialize({config}) returned {status.code.name}: {status.info}")
    if stored is not None:
        cache = Path(store)
        records, spent, made = stored["records"], 0.0, 0
        templates = stored["templates"]
        load = templates.__getitem__
        say(f"{len(ids)} images, templates from the store {cache}")
    else:
        key = implementation.replace(":", "_").replace(".", "_") + "-" + config.name
        cache = Path(cache_dir) if cache_dir is not None else settings.cache_root() / "lfw" / key
        (cache / "templates").mkdir(parents=True, exist_ok=True)
        say(f"{len(ids)} images, templates cached in {cache}")
        pool = WorkerPool(implementation, str(config), WorkerLimits(), say=say)
        try:
            records, spent, made = make_templates(
                pool, image_entries(image_root, ids), cache, workers, progress, say=say
            )
        finally:
            pool.close()
        templates = {}
        load = lambda tid: templates.setdefault(tid, (cache / "templates" / "enroll" / f"{tid}.tmpl").read_bytes())  # noqa: E731
    scores = np.empty(len(pairs), np.float64)
    failed = np.zeros(len(pairs), bool)
    for i, (a, b) in enumerate(ids_of):
        m = impl.match_templates(load(b), load(a))
        scores[i], failed[i] = float(m.similarity), m.status.code != ReturnCode.Success
    same = np.array([p.is_same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    protocol = lfw_10fold(scores, same, folds, failed=failed)
    tar = tar_at_far(scores[same], scores[~same], [1e-3], genuine_failed=failed[same], impostor_failed=failed[~same])
    wanted = set(ids)
    fte = [r for r in records.values() if r["code"] != ReturnCode.Success and r["id"] in wanted]
    call_ms = np.array([r["ms"] for r in records.values() if r.get("ms") is not None])
    from frvt.perf.machine import machine_info

    return {
        "schema": SCHEMA,
        "protocol": "LFW View-2, pairs.txt, 10 folds: threshold from 9 folds, accuracy on the 10th",
        "implementation": implementation,
        "implementation_version": getattr(impl, "version", None),
        "config_dir": str(config),
        "mean_accuracy": float(protocol.mean_accuracy),
        "std_accuracy": float(protocol.std_accuracy),
        "fold_accuracies": [float(a) for a in protocol.fold_accuracies],
        "tar_at_far_1e-3": float(tar[1e-3]),
        "n_genuine": int(same.sum()),
        "n_impostor": int((~same).sum()),
        "failed_comparisons": int(failed.sum()),
        "n_images": len(ids),
        "failures_to_enrol": len(fte) / len(ids),
        "failures_to_enrol_count": len(fte),
        "failed_images": [{"id": r["id"], "code": r["code"], "info": r["info"]} for r in fte][:100],
        "images_per_second": (made / spent) if made and spent else None,
        "workers": workers,
        "create_template_median_ms": float(np.median(call_ms)) if call_ms.size else None,
        "template_cache": str(cache),
        "template_store": None if store is None else str(store),
        "machine": machine_info(),
    }


def _store_templates(store: str | Path, ids: list[str], implementation: str, config_dir) -> dict:
    """The templates of ``ids`` from a template store, with per-id records like :func:`make_templates`'s.

    Raises ValueError: a store another implementation made, templates still to make, an image of
    the protocol the store lacks (named).
    """
    from frvt.store import StoreError, read_store_info, read_templates

    try:
        info = read_store_info(store)
    except StoreError as exc:
        raise ValueError(str(exc)) from None
    if implementation != DEFAULT_IMPLEMENTATION and implementation != info.implementation:
        raise ValueError(f"{store}: made by {info.implementation}, not by {implementation}")
    if not info.complete:
        raise ValueError(
            f"{store}: {info.n - info.n_made} of {info.n} templates are still to make: finish `frvt enroll`"
        )
    row = {str(i).replace("\\", "/").rsplit("/", 1)[-1]: k for k, i in enumerate(info.ids)}
    missing = [i for i in ids if i not in row]
    if missing:
        raise ValueError(f"{store}: no template for {len(missing)} LFW images, e.g. {missing[0]!r}")
    all_templates = read_templates(store, 0, info.n)
    import h5py

    with h5py.File(store, "r") as f:
        ms = f["ms"][:]
        infos = f["info"][:]
    records, templates = {}, {}
    for i in ids:
        k = row[i]
        templates[i] = all_templates[k]
        text = infos[k].decode() if isinstance(infos[k], bytes) else str(infos[k])
        records[i] = {"id": i, "code": int(info.codes[k]), "info": text, "ms": float(ms[k])}
    return {
        "implementation": info.implementation,
        "config_dir": config_dir if config_dir is not None else info.config_dir,
        "records": records,
        "templates": templates,
    }
