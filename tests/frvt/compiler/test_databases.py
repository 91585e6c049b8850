"""frvt.compiler.databases: manifests, the convolution scheme a database serves, discovery of the
committed databases, pruning, merging and dropping records."""

from __future__ import annotations

import json

import pytest

from frvt.compiler import CompileError, compile as tvm_compile, databases, targets
from onnx_models import write_tiny_model


def _record(workload: int, seconds: float) -> str:
    return json.dumps([workload, [[], [seconds], {"kind": "llvm"}, []]])


def test_conv_scheme_defaults_to_the_databases(tiny_model, tmp_path):
    target = targets.parse_target("broadwell")
    assert databases.database_conv_scheme(None) == "NCHW"
    old = tmp_path / "old"  # a manifest from before the option: NCHW
    databases.write_manifest(old, tiny_model, target)
    assert databases.database_conv_scheme(old) == "NCHW"
    new = tmp_path / "new"
    databases.write_manifest(new, tiny_model, target, conv_scheme="NHWC")
    assert databases.database_conv_scheme(new) == "NHWC"
    assert tvm_compile.cache_key(tiny_model, target, new) == tvm_compile.cache_key(
        tiny_model, target, new, conv_scheme="NHWC"
    )
    (new / databases.MANIFEST_NAME).write_text(json.dumps({"conv_scheme": "NCWH"}))
    with pytest.raises(CompileError, match="NCWH"):
        databases.database_conv_scheme(new)


def test_prune_keeps_the_fastest_per_workload_and_drops_failures(tmp_path):
    lines = [_record(0, s) for s in (0.5, 0.1, 0.3, 0.2)] + [_record(1, 1e10), _record(1, 0.7), _record(1, 0.9)]
    (tmp_path / databases.RECORD_FILE).write_text("\n".join(lines) + "\n")
    assert databases.prune_database(tmp_path, keep_per_workload=2) == (7, 4)
    kept = [json.loads(line) for line in (tmp_path / databases.RECORD_FILE).read_text().splitlines()]
    assert [(w, r[1][0]) for w, r in kept] == [(0, 0.1), (0, 0.2), (1, 0.7), (1, 0.9)]
    assert databases.count_records(tmp_path) == 4


def test_merge_database_shares_workloads_and_renumbers_records(tmp_path):
    source, destination = tmp_path / "src", tmp_path / "dst"
    for directory, workloads, records in (
        (source, ['["a"]', '["b"]'], [_record(0, 0.1), _record(1, 0.2)]),
        (destination, ['["b"]'], [_record(0, 0.3)]),
    ):
        directory.mkdir()
        (directory / databases.WORKLOAD_FILE).write_text("".join(w + "\n" for w in workloads))
        (directory / databases.RECORD_FILE).write_text(
            "".join(r + "\n" for r in records) + "[0, [[], [0.9"
        )  # partial line
    assert databases.merge_database(source, destination) == 2
    assert (destination / databases.WORKLOAD_FILE).read_text().splitlines() == ['["b"]', '["a"]']
    merged = [json.loads(line) for line in (destination / databases.RECORD_FILE).read_text().splitlines()]
    assert [(w, r[1][0]) for w, r in merged] == [(0, 0.3), (1, 0.1), (0, 0.2)]


def test_drop_records_deletes_only_the_given_workloads(tmp_path):
    (tmp_path / databases.WORKLOAD_FILE).write_text('["111", "m0"]\n["222", "m1"]\n["333", "m2"]\n')
    lines = [_record(0, 0.1), _record(1, 0.2), _record(2, 0.3), _record(1, 0.4)]
    (tmp_path / databases.RECORD_FILE).write_text("".join(line + "\n" for line in lines))
    assert databases.drop_records(tmp_path, {"222"}) == 2
    kept = [json.loads(line) for line in (tmp_path / databases.RECORD_FILE).read_text().splitlines()]
    assert [(w, r[1][0]) for w, r in kept] == [(0, 0.1), (2, 0.3)]
    assert len((tmp_path / databases.WORKLOAD_FILE).read_text().splitlines()) == 3  # indices stay valid


def test_find_tuned_database_matches_hash_and_target(tiny_model, tmp_path):
    target = targets.parse_target("broadwell")
    database = tmp_path / "tiny-broadwell"
    databases.write_manifest(database, tiny_model, target)
    assert databases.find_tuned_database(tiny_model, target, roots=(tmp_path,)) is None  # no records yet
    (database / databases.RECORD_FILE).write_text(_record(0, 0.001) + "\n")
    assert databases.find_tuned_database(tiny_model, target, roots=(tmp_path,)) == database
    skylake = targets.parse_target('{"kind": "llvm", "mcpu": "skylake"}')
    assert databases.find_tuned_database(tiny_model, skylake, roots=(tmp_path,)) is None
    other = write_tiny_model(tmp_path / "other.onnx", seed=2)
    assert databases.find_tuned_database(other, target, roots=(tmp_path,)) is None


def test_find_tuned_database_prefers_the_canonical_name_then_more_records(tiny_model, tmp_path):
    target = targets.parse_target("broadwell")
    for name, n_records in (("tiny-broadwell-a", 1), ("tiny-broadwell-b", 3), ("tiny-broadwell", 2)):
        databases.write_manifest(tmp_path / name, tiny_model, target)
        (tmp_path / name / databases.RECORD_FILE).write_text(
            "".join(_record(0, 0.001) + "\n" for _ in range(n_records))
        )
    assert databases.find_tuned_database(tiny_model, target, roots=(tmp_path,)) == tmp_path / "tiny-broadwell"
    (tmp_path / "tiny-broadwell" / databases.MANIFEST_NAME).unlink()
    assert databases.find_tuned_database(tiny_model, target, roots=(tmp_path,)) == tmp_path / "tiny-broadwell-b"


def test_find_tuned_database_matches_the_input_shape(tiny_model, tmp_path):
    """A database tuned for a batch of two serves that shape only, even under the canonical name;
    a manifest without a shape stands for the model file's own."""
    from frvt.compiler.passes import onnx_input_spec

    target = targets.parse_target("broadwell")
    own = list(onnx_input_spec(tiny_model)[1])
    batch2 = [2, *own[1:]]
    for name, extra in (("tiny-broadwell", {}), ("tiny-broadwell-flip", {"input_shape": batch2})):
        databases.write_manifest(tmp_path / name, tiny_model, target, **extra)
        (tmp_path / name / databases.RECORD_FILE).write_text(_record(0, 0.001) + "\n")
    assert databases.find_tuned_database(tiny_model, target, roots=(tmp_path,)) == tmp_path / "tiny-broadwell"
    assert databases.find_tuned_database(tiny_model, target, roots=(tmp_path,), input_shape=tuple(own)) == (
        tmp_path / "tiny-broadwell"
    )
    assert databases.find_tuned_database(tiny_model, target, roots=(tmp_path,), input_shape=tuple(batch2)) == (
        tmp_path / "tiny-broadwell-flip"
    )
    assert databases.find_tuned_database(tiny_model, target, roots=(tmp_path,), input_shape=(3, *own[1:])) is None
