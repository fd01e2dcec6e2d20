"""Is a difference between two criteria larger than the seed-to-seed noise? Paired comparisons over seeds.

Two criteria run with the same seed share the initial weights, the data order and the split, so their
accuracies are compared seed by seed: for criteria A and B at one sparsity, with the seeds both have,
``d_i = acc_A(seed_i) - acc_B(seed_i)``; the report gives the mean difference ``mean(d)`` with its 95%
confidence interval from Student's t (the paired t interval):

    mean(d) ± t_{0.975, n-1} * sd(d) / sqrt(n)          (sd with ddof=1; n >= 2 common seeds)

An interval that excludes 0 is marked (▲: A above B, ▼: A below B). Each interval is a separate comparison: no
correction for the number of comparisons a report makes (with 20 intervals, about one excludes 0 by chance
when nothing differs); the report says so.

How many seeds a difference needs (:func:`seeds_needed`): the smallest n for which the two-sided paired t-test
at level 0.05 detects a true difference ``delta`` with power 0.8, given the spread ``sd`` of the paired
differences: power = P(|T| > t_{0.975, n-1}) with T noncentral t (n - 1 degrees of freedom, noncentrality
``delta * sqrt(n) / sd``), integrated numerically (:func:`_power`). Effect size delta/sd = 1 needs 10 seeds, 0.5 needs 34 (Cohen 1988; G*Power's
one-sample / paired t-test).
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
POWER = 0.8
ALPHA = 0.05
MAX_SEEDS = 100_000


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (``scipy.stats.t.ppf``)."""
    from scipy.stats import t

    return float(t.ppf(p, df))


#: a spread of paired accuracy differences at or below this is none: equal differences computed from different
#: accuracies differ by float rounding (~1e-17)
NO_SPREAD = 1e-12


@dataclass(frozen=True)
class PairedDiff:
    """``a - b`` over the seeds both criteria have, at one target sparsity: mean, spread and t interval."""

    a: str
    b: str
    target: float
    seeds: tuple[int, ...]
    diffs: tuple[float, ...]
    confidence: float = CONFIDENCE

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        """The mean difference; one within float rounding of 0 (differences that cancel: +1/N and -1/N) is 0."""
        if not self.diffs:
            return math.nan
        mean = statistics.fmean(self.diffs)
        return 0.0 if abs(mean) <= NO_SPREAD else mean

    @property
    def sd(self) -> float:
        """Sample standard deviation of the paired differences (ddof=1; nan below two seeds)."""
        return statistics.stdev(self.diffs) if self.n > 1 else math.nan

    @property
    def half_width(self) -> float:
        """``t_{(1+confidence)/2, n-1} * sd / sqrt(n)`` (nan below two seeds)."""
        if self.n < 2:
            return math.nan
        return t_quantile(0.5 + self.confidence / 2, self.n - 1) * self.sd / math.sqrt(self.n)

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    @property
    def no_spread(self) -> bool:
        """Every seed gave the same difference (two seeds often do where accuracy moves in steps of one test image):
        the spread estimate is 0 (up to float rounding of the accuracies), the t interval has no width, and it says
        nothing about the seed-to-seed noise."""
        return self.n > 1 and self.sd <= NO_SPREAD

    @property
    def sign(self) -> int:
        """+1 where the whole interval is above 0, -1 where below, 0 where it includes 0 or cannot be formed (below
        two seeds, or no spread: :attr:`no_spread`)."""
        if self.n < 2 or math.isnan(self.half_width) or self.no_spread:
            return 0
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    @property
    def seeds_needed(self) -> int | None:
        """Seeds for a paired t-test to detect this mean difference at this spread (see :func:`seeds_needed`); None
        without a spread to plan with."""
        return seeds_needed(self.mean, self.sd) if self.n > 1 and not self.no_spread else None


def paired_difference(a: str, b: str, target: float, values_a: Mapping[int, float], values_b: Mapping[int, float],
                      confidence: float = CONFIDENCE) -> PairedDiff:
    """The paired difference ``a - b`` over the seeds in both ``values_a`` and ``values_b`` (seed -> value)."""
    seeds = tuple(sorted(set(values_a) & set(values_b)))
    return PairedDiff(a, b, float(target), seeds, tuple(float(values_a[s]) - float(values_b[s]) for s in seeds),
                      confidence)


def _power(delta: float, sd: float, n: int, alpha: float) -> float:
    """P(|T| > t_{1-alpha/2, n-1}) for T = (Z + nc) / S, nc = |delta| sqrt(n) / sd, S = sqrt(V / (n - 1)) with V
    chi-squared (n - 1 degrees of freedom): the expectation over S of Phi(nc - c S) + Phi(-nc - c S), integrated
    numerically over S's density. scipy's noncentral t (``nct.sf``) returns NaN for some large noncentralities
    (e.g. 1 degree of freedom, nc ~ 8), which a search for the first n with enough power took for enough."""
    from scipy.integrate import quad
    from scipy.special import gammaln, ndtr

    df = n - 1
    crit = t_quantile(1 - alpha / 2, df)
    nc = abs(delta) * math.sqrt(n) / sd
    # the density of S: 2 (df/2)^(df/2) / Gamma(df/2) s^(df-1) exp(-df s^2 / 2), in logs; S is within ~14 of its
    # standard deviations (~1 / sqrt(2 df)) of 1 but for ~1e-12 of its mass
    log_norm = math.log(2.0) + df / 2 * math.log(df / 2) - float(gammaln(df / 2))

    def integrand(x: float) -> float:
        if x <= 0.0:
            return 0.0
        density = math.exp(log_norm + (df - 1) * math.log(x) - df * x * x / 2)
        return float(ndtr(nc - crit * x) + ndtr(-nc - crit * x)) * density

    value, _ = quad(integrand, 0.0, 1.0 + 10.0 / math.sqrt(df), points=[1.0], limit=200)
    return min(1.0, max(0.0, value))


def seeds_needed(delta: float, sd: float, power: float = POWER, alpha: float = ALPHA) -> int | None:
    """The smallest number of seeds (>= 2) with which a two-sided paired t-test at level ``alpha`` detects a true
    mean difference ``delta`` with probability ``power``, the paired differences having standard deviation ``sd``.

    None when it cannot be said (``delta`` 0 or not finite, ``sd`` not finite) or needs more than 100,000 seeds;
    2 when ``sd`` is 0. The search starts at the normal approximation ``((z_{1-alpha/2} + z_power) sd / delta)^2``,
    which never exceeds the t-test's n, and steps up to the first n whose power is enough.
    """
    if not (math.isfinite(delta) and math.isfinite(sd)) or delta == 0:
        return None
    if sd == 0:
        return 2
    from scipy.stats import norm

    start = max(2, math.floor(((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * sd / abs(delta)) ** 2))
    if start > MAX_SEEDS:
        return None
    n = start
    while _power(delta, sd, n, alpha) < power:
        n += 1
        if n > MAX_SEEDS:
            return None
    return n


def pooled_sd(diffs: Iterable[PairedDiff]) -> float:
    """The pooled standard deviation of several comparisons' paired differences: sqrt of the df-weighted mean of
    their variances (nan without a comparison of two or more seeds)."""
    usable = [d for d in diffs if d.n > 1]
    df = sum(d.n - 1 for d in usable)
    if not df:
        return math.nan
    return math.sqrt(sum((d.n - 1) * d.sd ** 2 for d in usable) / df)


Table = Mapping[str, Mapping[float, Mapping[int, float]]]  # criterion -> target sparsity -> seed -> accuracy


def against(table: Table, reference: str, confidence: float = CONFIDENCE) -> dict[float, dict[str, PairedDiff]]:
    """``target -> criterion -> (criterion - reference)`` for every other criterion at every target the
    reference has."""
    out: dict[float, dict[str, PairedDiff]] = {}
    for target, ref in sorted((table.get(reference) or {}).items()):
        out[target] = {c: paired_difference(c, reference, target, by_target[target], ref, confidence)
                       for c, by_target in table.items() if c != reference and target in by_target}
    return out


@dataclass(frozen=True)
class Verdict:
    """At one target sparsity: the best criterion by mean, those whose paired interval against it includes 0
    (``tied``), those below it (``worse``), and those it cannot be told from (``unknown``): too few seeds in common,
    or the same nonzero difference on every seed (no spread to judge it by)."""

    target: float
    best: str
    means: dict[str, float]
    tied: dict[str, PairedDiff]
    worse: dict[str, PairedDiff]
    unknown: dict[str, PairedDiff]


def verdicts(table: Table, confidence: float = CONFIDENCE) -> list[Verdict]:
    """One :class:`Verdict` per target sparsity (criteria with one value at least), best first by mean."""
    targets = sorted({t for by_target in table.values() for t in by_target})
    out = []
    for target in targets:
        means = {c: statistics.fmean(v[target].values()) for c, v in table.items() if v.get(target)}
        if not means:
            continue
        # means within float rounding of each other are equal: the first by name is "best", not the one that
        # rounding favoured
        best = max(sorted(means), key=lambda c: round(means[c], 12))
        tied, worse, unknown = {}, {}, {}
        for c in sorted(means, key=lambda c: -means[c]):
            if c == best:
                continue
            d = paired_difference(c, best, target, table[c][target], table[best][target], confidence)
            cannot_tell = d.n < 2 or (d.no_spread and d.mean != 0)  # identical differences: no noise estimate
            (unknown if cannot_tell else worse if d.sign < 0 else tied)[c] = d
        out.append(Verdict(target, best, means, tied, worse, unknown))
    return out


def sizing(sd: float, deltas: Sequence[float]) -> list[int | None]:
    """Seeds needed for each difference in ``deltas`` at the spread ``sd``."""
    return [seeds_needed(d, sd) for d in deltas]
