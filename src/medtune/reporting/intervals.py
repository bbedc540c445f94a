"""95% intervals for the numbers an exam run reports, and for the difference between two runs.

- `wilson(correct, n)`: the Wilson score interval of a proportion (accuracy under either reading).
  It stays inside [0, 1] and behaves at 0 or n correct, where the normal approximation does not.
- `bootstrap_ratio(earned, possible)`: a points-weighted score (sum of points earned / points
  possible) resampled over questions; the percentile interval of the resampled scores.
- `paired_difference(a, b)`: system B minus system A on the questions both answered, by a paired
  bootstrap over questions, beside the exact McNemar p of `reporting.stats`. `within_noise` is true
  when the interval covers 0, and `words()` says so in a sentence.

Every bootstrap is seeded (`seed`, default 0) and uses numpy's PCG64, so the same inputs give the same
interval on every machine with the same numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import sqrt

from medtune.reporting.stats import format_p, mcnemar_exact

Z95 = 1.959963984540054  # the two-sided 95% quantile of the standard normal
LEVEL = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A value with its 95% interval and standard error; `method` says how the interval was made."""

    value: float
    low: float
    high: float
    standard_error: float
    method: str  # "wilson" or "bootstrap"
    n: int

    def to_dict(self) -> dict:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "standard_error": self.standard_error,
            "level": LEVEL,
            "method": self.method,
            "n": self.n,
        }

    def text(self, digits: int = 3) -> str:
        """`0.412 [0.355, 0.471]`: the value, then its 95% interval."""
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def plus_minus(self, digits: int = 3) -> str:
        """`0.412 ± 0.030` with the standard error."""
        return f"{self.value:.{digits}f} ± {self.standard_error:.{digits}f}"


def wilson(correct: int, n: int, z: float = Z95) -> Interval:
    """The Wilson score interval of `correct` of `n`; with no questions the interval is all of [0, 1]."""
    for name, count in (("correct", correct), ("n", n)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"wilson(): {name} must be a non-negative integer, got {count!r}")
    if correct > n:
        raise ValueError(f"wilson(): {correct} correct of {n} questions is more than all of them")
    if n == 0:
        return Interval(0.0, 0.0, 1.0, 0.5, "wilson", 0)
    p = correct / n
    z2 = z * z
    scale = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / scale
    half = z * sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / scale
    low, high = max(0.0, centre - half), min(1.0, centre + half)
    if correct == 0:
        low = 0.0
    if correct == n:
        high = 1.0
    return Interval(p, low, high, sqrt(p * (1 - p) / n), "wilson", n)


def _resample_indices(n: int, resamples: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(resamples, n))


def _percentiles(values) -> tuple[float, float]:
    import numpy as np

    tail = (1 - LEVEL) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_ratio(
    earned: Sequence[float], possible: Sequence[float], resamples: int = RESAMPLES, seed: int = 0
) -> Interval:
    """sum(earned) / sum(possible) with a percentile interval from resampling the questions."""
    import numpy as np

    if len(earned) != len(possible):
        raise ValueError(f"bootstrap_ratio(): {len(earned)} earned values for {len(possible)} questions")
    n = len(earned)
    earned_arr, possible_arr = np.asarray(earned, dtype=float), np.asarray(possible, dtype=float)
    total = possible_arr.sum()
    value = float(earned_arr.sum() / total) if total > 0 else 0.0
    if n == 0 or total <= 0:
        return Interval(value, 0.0, 1.0, 0.5, "bootstrap", n)
    idx = _resample_indices(n, resamples, seed)
    denominators = possible_arr[idx].sum(axis=1)
    ratios = np.divide(earned_arr[idx].sum(axis=1), denominators, out=np.zeros(resamples), where=denominators > 0)
    low, high = _percentiles(ratios)
    return Interval(value, low, high, float(ratios.std(ddof=1)), "bootstrap", n)


@dataclass(frozen=True)
class PairedDifference:
    """B minus A on the same questions: the mean difference, its paired-bootstrap 95% interval, McNemar's p."""

    difference: float
    low: float
    high: float
    standard_error: float
    n: int
    a_only: int  # questions A got right and B did not
    b_only: int
    p_value: float  # exact McNemar on a_only / b_only

    @property
    def within_noise(self) -> bool:
        return self.low <= 0.0 <= self.high

    def verdict(self) -> str:
        """`within noise`, `B better` or `A better`: what the interval allows one to say."""
        if self.within_noise:
            return "within noise"
        return "B better" if self.difference > 0 else "A better"

    def words(self, a_name: str = "A", b_name: str = "B") -> str:
        """One sentence a reader can quote, naming the systems."""
        shown = (
            f"{b_name} - {a_name} = {self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}] on {self.n} questions"
        )
        p = f"McNemar p = {format_p(self.p_value)}"
        if self.n == 0:
            return f"{b_name} and {a_name} share no questions: no difference can be measured"
        if self.within_noise:
            return f"{shown}: the 95% interval covers 0, so the difference is within noise ({p})"
        better = b_name if self.difference > 0 else a_name
        return f"{shown}: the 95% interval excludes 0, so {better} is better beyond noise ({p})"

    def to_dict(self) -> dict:
        return {
            "difference": self.difference,
            "low": self.low,
            "high": self.high,
            "standard_error": self.standard_error,
            "level": LEVEL,
            "method": "paired bootstrap",
            "n": self.n,
            "a_only": self.a_only,
            "b_only": self.b_only,
            "mcnemar_p": self.p_value,
            "within_noise": self.within_noise,
        }


def paired_difference(
    a: Mapping[str, float], b: Mapping[str, float], resamples: int = RESAMPLES, seed: int = 0
) -> PairedDifference:
    """B - A over the question ids both maps hold (1.0 correct, 0.0 not; partial credit allowed).

    The questions are resampled together, so what both systems find hard cancels out: the interval is
    narrower than the two accuracies' own intervals suggest whenever the systems agree a lot.
    """
    import numpy as np

    ids = sorted(a.keys() & b.keys())
    n = len(ids)
    a_arr = np.asarray([float(a[i]) for i in ids])
    b_arr = np.asarray([float(b[i]) for i in ids])
    a_only = int(((a_arr >= 1.0) & (b_arr < 1.0)).sum())
    b_only = int(((b_arr >= 1.0) & (a_arr < 1.0)).sum())
    p_value = mcnemar_exact(a_only, b_only)
    if n == 0:
        return PairedDifference(0.0, 0.0, 0.0, 0.0, 0, 0, 0, 1.0)
    diffs = b_arr - a_arr
    means = diffs[_resample_indices(n, resamples, seed)].mean(axis=1)
    low, high = _percentiles(means)
    se = float(means.std(ddof=1)) if resamples > 1 else 0.0
    return PairedDifference(float(diffs.mean()), low, high, se, n, a_only, b_only, p_value)


def correct_map(statuses: Mapping[str, str]) -> dict[str, float]:
    """question id -> 1.0 when its status is correct, else 0.0 (invalid counts as not correct)."""
    return {qid: 1.0 if status == "correct" else 0.0 for qid, status in statuses.items()}
