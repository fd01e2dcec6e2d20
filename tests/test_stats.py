"""The report's statistics against hand computations: paired differences by seed with Student's t intervals,
the verdict per sparsity, and the seeds a difference needs (published paired t-test sample sizes)."""
from __future__ import annotations

import math
import statistics

import pytest

from prunelab.report import stats

T_975_DF2 = 4.302652729749462  # Student's t, 97.5% quantile, 2 degrees of freedom (any t table: 4.303)

# a fixed small table: criterion -> target -> seed -> test accuracy
TABLE = {
    "random": {0.9: {0: 0.70, 1: 0.71, 2: 0.75, 3: 0.60}},   # seed 3: only random has it
    "magnitude": {0.9: {0: 0.80, 1: 0.82, 2: 0.84, 4: 0.99}},  # seed 4: only magnitude has it
    "snip": {0.9: {0: 0.72, 1: 0.70, 2: 0.755}},
}


def test_paired_difference_excluding_zero_by_hand():
    d = stats.paired_difference("magnitude", "random", 0.9, TABLE["magnitude"][0.9], TABLE["random"][0.9])
    # seeds 0, 1, 2 only; differences 0.10, 0.11, 0.09: mean 0.10, sd 0.01
    assert d.seeds == (0, 1, 2) and d.n == 3
    assert d.mean == pytest.approx(0.10, abs=1e-12) and d.sd == pytest.approx(0.01, abs=1e-12)
    half = T_975_DF2 * 0.01 / math.sqrt(3)  # 0.024841
    assert d.half_width == pytest.approx(half, rel=1e-9)
    assert (d.low, d.high) == (pytest.approx(0.10 - half), pytest.approx(0.10 + half))
    assert d.sign == 1


def test_paired_difference_including_zero_by_hand():
    d = stats.paired_difference("snip", "random", 0.9, TABLE["snip"][0.9], TABLE["random"][0.9])
    # differences 0.02, -0.01, 0.005: mean 0.005, deviations 0.015, -0.015, 0 -> variance 0.000225, sd 0.015
    assert d.mean == pytest.approx(0.005, abs=1e-12) and d.sd == pytest.approx(0.015, abs=1e-12)
    half = T_975_DF2 * 0.015 / math.sqrt(3)  # 0.037262
    assert d.low == pytest.approx(0.005 - half) and d.high == pytest.approx(0.005 + half)
    assert d.low < 0 < d.high and d.sign == 0
    reverse = stats.paired_difference("random", "snip", 0.9, TABLE["random"][0.9], TABLE["snip"][0.9])
    assert reverse.mean == pytest.approx(-d.mean) and reverse.half_width == pytest.approx(d.half_width)


def test_one_common_seed_gives_no_interval():
    d = stats.paired_difference("a", "b", 0.5, {0: 0.9, 1: 0.8}, {1: 0.7})
    assert d.n == 1 and d.mean == pytest.approx(0.1) and math.isnan(d.half_width) and d.sign == 0
    assert d.seeds_needed is None


def test_the_same_difference_on_every_seed_is_not_a_finding():
    """Two seeds that differ by exactly one test image each (accuracy moves in steps of 1/359 on digits' test split)
    give a zero spread: the t interval has no width, which is no evidence of a difference. No ▲/▼, no seeds-needed
    figure, and the verdict cannot tell it from the best."""
    from prunelab.report import results

    step = 1 / 359
    a, b = {0: 0.30, 1: 0.77}, {0: 0.30 - step, 1: 0.77 - step}
    d = stats.paired_difference("a", "b", 0.9, a, b)
    assert d.n == 2 and 0 < d.sd < 1e-15  # the same difference, but for float rounding
    assert d.no_spread and d.sign == 0 and d.seeds_needed is None
    assert "no spread" in results.interval(d) and "▲" not in results.interval(d)
    assert results.seeds_text(d) == "? (no spread)"
    (v,) = stats.verdicts({"a": {0.9: a}, "b": {0.9: b}})
    assert v.best == "a" and set(v.unknown) == {"b"} and not v.worse and not v.tied
    same = stats.paired_difference("a", "c", 0.9, a, dict(a))  # equal on every seed: tied, as before
    (v,) = stats.verdicts({"a": {0.9: a}, "c": {0.9: dict(a)}})
    assert same.mean == 0 and set(v.tied) == {"c"}


def test_against_a_reference():
    vs_random = stats.against(TABLE, "random")
    assert set(vs_random) == {0.9} and set(vs_random[0.9]) == {"magnitude", "snip"}
    assert vs_random[0.9]["magnitude"].sign == 1 and vs_random[0.9]["snip"].sign == 0


def test_verdict_best_tied_and_worse():
    table = {
        "magnitude": {0.9: {0: 0.85, 1: 0.86, 2: 0.84}},
        "snip": {0.9: {0: 0.845, 1: 0.862, 2: 0.838}},   # -0.005, +0.002, -0.002 vs magnitude: CI includes 0
        "random": {0.9: {0: 0.70, 1: 0.72, 2: 0.69}},    # -0.15, -0.14, -0.15: CI below 0
        "gradient": {0.9: {7: 0.80}},                    # no seed in common with magnitude
    }
    (v,) = stats.verdicts(table)
    assert v.best == "magnitude" and v.means["magnitude"] == pytest.approx(0.85)
    assert set(v.tied) == {"snip"} and set(v.worse) == {"random"} and set(v.unknown) == {"gradient"}
    snip = v.tied["snip"]
    # hand: mean -0.0016667, sd 0.0035119, half-width 4.3027 * 0.0035119 / sqrt(3) = 0.0087240
    assert snip.mean == pytest.approx(-0.005 / 3, abs=1e-12)
    assert snip.sd == pytest.approx(0.0035119, abs=1e-6) and snip.half_width == pytest.approx(0.0087240, abs=1e-6)


@pytest.mark.parametrize("effect,n", [(1.0, 10), (0.8, 15), (0.5, 34), (2.0, 5)])
def test_seeds_needed_matches_published_paired_t_sample_sizes(effect, n):
    """Two-sided paired (one-sample) t-test, alpha 0.05, power 0.8: effect size 0.5 -> 34, 0.8 -> 15, 1 -> 10
    (G*Power; Cohen 1988). Guenther's approximation ((1.96 + 0.8416) / d)^2 + 1.96^2 / 2 gives 33.3, 9.8."""
    assert stats.seeds_needed(effect, 1.0) == n
    assert stats.seeds_needed(-effect * 0.01, 0.01) == n  # only |delta| / sd matters


def test_power_at_two_seeds_by_simulation_where_scipys_noncentral_t_gives_nan():
    """n = 2 (1 degree of freedom): T = (Z + nc) / |Z2| by definition; its two-sided power, simulated, at
    noncentralities where scipy's ``nct.sf`` returns NaN (which made 2 seeds look enough for a 1-point
    difference at a spread of 0.16 points)."""
    import numpy as np

    rng = np.random.default_rng(0)
    z, z2 = rng.standard_normal(1_000_000), rng.standard_normal(1_000_000)
    crit = stats.t_quantile(0.975, 1)
    for nc in (8.0, 10.0, 15.0):
        simulated = float(np.mean(np.abs((z + nc) / np.abs(z2)) > crit))
        assert stats._power(nc / math.sqrt(2), 1.0, 2, 0.05) == pytest.approx(simulated, abs=0.002), nc


def test_seeds_needed_never_grows_with_the_difference():
    """A larger true difference never needs more seeds, at any spread (0.10 to 0.30 points)."""
    for sd in [0.001 + 0.0001 * i for i in range(21)]:
        needed = [stats.seeds_needed(d, sd) for d in (0.0025, 0.005, 0.01, 0.02)]
        assert needed == sorted(needed, reverse=True), (sd, needed)
    assert stats.seeds_needed(0.01, 0.0016) == 3  # power at 2 seeds is 0.24 (it read 2: NaN taken for enough)


def test_seeds_needed_edge_cases():
    assert stats.seeds_needed(0.0, 0.01) is None
    assert stats.seeds_needed(0.01, 0.0) == 2
    assert stats.seeds_needed(0.01, math.nan) is None
    assert stats.seeds_needed(1e-6, 1.0) is None  # beyond 100,000 seeds


def test_pooled_sd_by_hand():
    a = stats.paired_difference("magnitude", "random", 0.9, TABLE["magnitude"][0.9], TABLE["random"][0.9])
    b = stats.paired_difference("snip", "random", 0.9, TABLE["snip"][0.9], TABLE["random"][0.9])
    # sqrt((2 * 0.01^2 + 2 * 0.015^2) / 4)
    assert stats.pooled_sd([a, b]) == pytest.approx(math.sqrt((2 * 1e-4 + 2 * 2.25e-4) / 4), rel=1e-9)


def test_equal_means_are_equal_whatever_the_rounding():
    """Two criteria with the same correct answers over the seeds, split differently (344 + 347 and 345 + 346 of
    359): their means are equal, but float sums differ in the last bit. The first by name is best, and the paired
    difference is exactly 0, not -5.6e-17."""
    n = 359
    table = {"taylor": {0.9: {0: 345 / n, 1: 346 / n}}, "snip_momentum": {0.9: {0: 344 / n, 1: 347 / n}}}
    assert statistics.fmean(table["taylor"][0.9].values()) != statistics.fmean(table["snip_momentum"][0.9].values())
    (v,) = stats.verdicts(table)
    assert v.best == "snip_momentum"
    (d,) = v.tied.values()
    assert d.mean == 0.0 and str(d.mean) == "0.0"
