"""A small real template store: LFW images of a few people, enrolled by the default implementation."""

from __future__ import annotations

import shutil
from pathlib import Path

PEOPLE = (
    "Abdullah_Gul",
    "Alvaro_Uribe",
    "Amelie_Mauresmo",
    "Andre_Agassi",
    "Ari_Fleischer",
    "Bill_Gates",
    "Aaron_Peirsol",
    "Adrien_Brody",
    "AJ_Cook",
    "Abel_Pacheco",
)
PER_PERSON = 5


def make_image_folder(lfw: Path, out: Path, people=PEOPLE, per_person: int = PER_PERSON) -> Path:
    """``out/<person>/<image>``: the first images of each person (and one unreadable file)."""
    root = lfw / "lfw-deepfunneled"
    for person in people:
        (out / person).mkdir(parents=True, exist_ok=True)
        for p in sorted((root / person).glob("*.jpg"))[:per_person]:
            shutil.copy(p, out / person / p.name)
    (out / people[0] / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return out
