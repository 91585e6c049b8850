"""frvt.compiler.targets: named targets and target dicts."""

from __future__ import annotations

import pytest

from frvt.compiler import targets


def test_parse_target_names_and_json():
    assert targets.parse_target("broadwell") == {"kind": "llvm", "mcpu": "broadwell", "num-cores": 1}
    assert targets.parse_target('{"kind": "llvm", "mcpu": "skylake", "num-cores": 4}') == {
        "kind": "llvm",
        "mcpu": "skylake",
        "num-cores": 4,
    }
    native = targets.parse_target("native")
    assert native["kind"] == "llvm" and native["mcpu"] and native["mcpu"] != "generic"
    assert targets.target_name(native) == native["mcpu"]


@pytest.mark.parametrize("bad", ["pentium", "{not json", '["llvm"]', '{"mcpu": "x"}'])
def test_parse_target_rejects_with_the_value(bad):
    with pytest.raises(ValueError, match="target"):
        targets.parse_target(bad)
