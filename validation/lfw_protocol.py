"""The LFW View-2 protocol: 10-fold cross-validated verification accuracy.

For each fold, the decision threshold is chosen on the other nine folds (the one maximising their
accuracy) and the accuracy is measured on the held-out fold; the result is the mean and spread of
the ten accuracies. Conventions follow :mod:`validation.metrics`: similarity scores unless
``higher_is_better=False``, a pair is called "same" when ``score >= threshold``, a failed comparison
is "different" at every threshold.

Threshold candidates on the training folds: the lowest distinct training similarity (accept all),
the midpoint between each two consecutive distinct similarities, and ``+inf`` (reject all). Every
threshold between two consecutive training scores gives the same training accuracy; the midpoint
generalises best. When several candidates tie for the best training accuracy, the middle one of
them is taken (the lower middle for an even count).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from validation.metrics import prepare_scores, to_user_threshold


@dataclass(frozen=True)
class LFWFold:
    """One held-out fold: the threshold from the other folds and the accuracy on this one.

    ``accuracy = n_correct / n_pairs`` (a fraction); ``threshold`` in the caller's units.
    """

    fold: int
    threshold: float
    train_accuracy: float
    n_correct: int
    n_pairs: int
    accuracy: float


@dataclass(frozen=True)
class LFWResult:
    """The ten folds and their summary.

    ``std_accuracy`` is the sample standard deviation of the fold accuracies (ddof=1) and
    ``standard_error = std_accuracy / sqrt(n_folds)``, the "+-" LFW results are quoted with.
    """

    folds: tuple[LFWFold, ...]
    mean_accuracy: float
    std_accuracy: float
    standard_error: float

    @property
    def fold_accuracies(self) -> list[float]:
        return [f.accuracy for f in self.folds]

    def as_dict(self) -> dict:
        """Plain JSON-ready fields: the summary, then per-fold accuracy, threshold and counts."""
        return {
            "mean_accuracy": self.mean_accuracy,
            "std_accuracy": self.std_accuracy,
            "standard_error": self.standard_error,
            "fold_accuracies": self.fold_accuracies,
            "fold_thresholds": [f.threshold for f in self.folds],
            "fold_counts": [{"fold": f.fold, "n_correct": f.n_correct, "n_pairs": f.n_pairs} for f in self.folds],
        }


def best_threshold(similarity: np.ndarray, is_same: np.ndarray) -> tuple[float, float]:
    """Threshold (similarity scale) maximising accuracy on the given pairs, and that accuracy.

    Parameters
    ----------
    similarity : numpy.ndarray of float64, shape (n,)
        Similarities; ``-inf`` for failed comparisons.
    is_same : numpy.ndarray of bool, shape (n,)

    Returns
    -------
    (threshold, accuracy)
    """
    n = similarity.size
    if n == 0:
        return math.nan, math.nan
    finite = np.unique(similarity[np.isfinite(similarity)])
    cand = np.concatenate([finite[:1], (finite[:-1] + finite[1:]) / 2, [np.inf]])
    same = np.sort(similarity[is_same])
    diff = np.sort(similarity[~is_same])
    accepted_same = same.size - np.searchsorted(same, cand, side="left")
    rejected_diff = np.searchsorted(diff, cand, side="left")
    correct = accepted_same + rejected_diff
    best = np.flatnonzero(correct == correct.max())
    j = int(best[(best.size - 1) // 2])
    return float(cand[j]), float(correct[j]) / n


def lfw_10fold(scores, is_same, fold, *, failed=None, higher_is_better: bool = True) -> LFWResult:
    """Cross-validated verification accuracy (LFW View 2): threshold from the other folds.

    Parameters
    ----------
    scores : array_like, shape (n_pairs,)
        One score per pair (similarity unless ``higher_is_better=False``).
    is_same : array_like of bool, shape (n_pairs,)
        True for a pair of the same person.
    fold : array_like of int, shape (n_pairs,)
        Fold label of each pair (LFW: 0..9); every distinct label is held out once.
    failed : array_like of bool, optional
        Failed comparisons: "different" at every threshold, kept in the accuracy's denominator.
    higher_is_better : bool
        False for distances.

    Returns
    -------
    LFWResult
    """
    s = prepare_scores(scores, failed, higher_is_better=higher_is_better, name="scores")
    same = np.asarray(is_same).astype(bool)
    folds = np.asarray(fold)
    if same.shape != s.shape or folds.shape != s.shape:
        raise ValueError(f"scores {s.shape}, is_same {same.shape} and fold {folds.shape} must have one shape")
    labels = np.unique(folds)
    if labels.size < 2:
        raise ValueError(f"need at least two folds, got {labels.size}")
    out = []
    for lab in labels:
        test = folds == lab
        t, train_acc = best_threshold(s[~test], same[~test])
        accepted = s[test] >= t
        n_correct = int(np.count_nonzero(accepted == same[test]))
        n_pairs = int(np.count_nonzero(test))
        out.append(
            LFWFold(
                int(lab) if np.issubdtype(folds.dtype, np.integer) else lab,
                float(to_user_threshold(t, higher_is_better)),
                train_acc,
                n_correct,
                n_pairs,
                n_correct / n_pairs,
            )
        )
    acc = np.array([f.accuracy for f in out])
    std = float(acc.std(ddof=1))
    return LFWResult(tuple(out), float(acc.mean()), std, std / math.sqrt(acc.size))


@dataclass(frozen=True)
class LFWPair:
    """One line of ``pairs.txt``: two images (``<name>/<name>_<NNNN>.jpg``), fold, same or not."""

    name1: str
    number1: int
    name2: str
    number2: int
    fold: int
    is_same: bool

    def image_paths(self, root: str | os.PathLike) -> tuple[Path, Path]:
        """Image paths under an LFW image root (e.g. ``lfw-deepfunneled``)."""
        r = Path(root)
        return (
            r / self.name1 / f"{self.name1}_{self.number1:04d}.jpg",
            r / self.name2 / f"{self.name2}_{self.number2:04d}.jpg",
        )


def read_pairs(path: str | os.PathLike) -> list[LFWPair]:
    """Parse LFW's ``pairs.txt``: a header ``<folds> <n>``, then per fold ``n`` matched lines
    (``name i j``) followed by ``n`` mismatched lines (``name1 i name2 j``).

    Raises ValueError naming the file and line of a malformed line.
    """
    p = Path(path)
    lines = p.read_text().splitlines()
    if not lines:
        raise ValueError(f"{p}: empty file")
    head = lines[0].split()
    try:
        n_folds, per_class = int(head[0]), int(head[1])
    except (IndexError, ValueError):
        raise ValueError(f"{p}, line 1: expected '<folds> <pairs per class>', got {lines[0]!r}") from None
    want = 1 + n_folds * 2 * per_class
    if len(lines) < want:
        raise ValueError(f"{p}: {len(lines)} lines, the header promises {want}")
    out = []
    for i in range(1, want):
        f, r = divmod(i - 1, 2 * per_class)
        parts = lines[i].split()
        try:
            if r < per_class:
                if len(parts) != 3:
                    raise ValueError
                out.append(LFWPair(parts[0], int(parts[1]), parts[0], int(parts[2]), f, True))
            else:
                if len(parts) != 4:
                    raise ValueError
                out.append(LFWPair(parts[0], int(parts[1]), parts[2], int(parts[3]), f, False))
        except ValueError:
            kind = "'name i j'" if r < per_class else "'name1 i name2 j'"
            raise ValueError(f"{p}, line {i + 1}: expected {kind}, got {lines[i]!r}") from None
    return out
