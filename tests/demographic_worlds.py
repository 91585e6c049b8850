"""Small labelled worlds for the demographics tests, and a brute-force oracle that loops over
comparisons."""

from __future__ import annotations

import math

import numpy as np


def oracle(sim, enrol, probe, genuine, group, threshold):
    """Loop over comparisons: per-group FNMR, per-cell FMR."""
    fnm, ng, fm, ni = {}, {}, {}, {}
    for s, e, p, is_gen in zip(sim, enrol, probe, genuine):
        ge, gp = group[e], group[p]
        if ge is None or gp is None:
            continue
        match = (not math.isnan(s)) and s >= threshold
        if is_gen:
            if ge != gp:
                continue
            ng[ge] = ng.get(ge, 0) + 1
            fnm[ge] = fnm.get(ge, 0) + (not match)
        else:
            ni[(ge, gp)] = ni.get((ge, gp), 0) + 1
            fm[(ge, gp)] = fm.get((ge, gp), 0) + match
    return fnm, ng, fm, ni


def world(seed=0, n_subjects=30, per=3):
    rng = np.random.default_rng(seed)
    templates = [f"s{s:03d}_{k:04d}" for s in range(n_subjects) for k in range(per)]
    identity = [t.rsplit("_", 1)[0] for t in templates]
    sex = {f"s{s:03d}": ("F" if s % 3 == 0 else "M") for s in range(n_subjects)}
    n = len(templates)
    e, p = np.triu_indices(n, 1)
    same = np.array([identity[i] == identity[j] for i, j in zip(e, p)])
    sim = np.where(same, rng.normal(0.8, 0.1, e.size), rng.normal(0.3, 0.12, e.size))
    # F-F impostors a little higher, so differentials exist
    ff = np.array([sex[identity[i]] == "F" and sex[identity[j]] == "F" for i, j in zip(e, p)])
    sim = sim + 0.08 * (ff & ~same)
    sim[rng.random(e.size) < 0.01] = np.nan  # failed comparisons
    subj_names = sorted(set(identity))
    sid = np.array([subj_names.index(identity[i]) for i in e])
    return templates, identity, sex, e, p, same, sim, sid
