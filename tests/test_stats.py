"""Tests for mcuquant.stats against published or hand-computed values."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from mcuquant.stats import (
    McNemar,
    absolute_errors,
    classification_rung,
    compare_classification,
    compare_regression,
    mcnemar_exact,
    mcnemar_sample_size,
    regression_rung,
    samples_to_resolve,
    wilson_interval,
)
from mcuquant.stats import _format_p


def pairs(a_only: int, b_only: int, both_right: int = 0, both_wrong: int = 0):
    """Paired correct arrays with the given 2x2 table (order of samples is irrelevant)."""
    a = [True] * a_only + [False] * b_only + [True] * both_right + [False] * both_wrong
    b = [False] * a_only + [True] * b_only + [True] * both_right + [False] * both_wrong
    return np.array(a), np.array(b)


# --- Wilson interval ------------------------------------------------------------------------


# Newcombe (1998), Statistics in Medicine 17:857, examples (a)-(d), method 3 (Wilson score,
# no continuity correction).
@pytest.mark.parametrize(
    "k, n, lo, hi",
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0000, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombe_1998(k, n, lo, hi):
    got_lo, got_hi = wilson_interval(k, n)
    assert round(got_lo, 4) == lo
    assert round(got_hi, 4) == hi
    assert got_lo <= k / n <= got_hi


def test_wilson_edges_stay_in_unit_interval():
    lo, hi = wilson_interval(0, 50)
    assert lo == pytest.approx(0.0, abs=1e-12) and 0 < hi < 1
    lo, hi = wilson_interval(50, 50)
    assert 0 < lo < 1 and hi == pytest.approx(1.0, abs=1e-12)
    # By symmetry, k=n mirrors k=0: upper bound of 0/20 is 0.1611 (Newcombe), so lower of 20/20
    # is 1 - 0.1611.
    assert round(wilson_interval(20, 20)[0], 4) == round(1 - 0.1611, 4)


def test_wilson_wider_at_higher_confidence():
    lo95, hi95 = wilson_interval(15, 148)
    lo99, hi99 = wilson_interval(15, 148, confidence=0.99)
    assert lo99 < lo95 and hi99 > hi95


@pytest.mark.parametrize("k, n", [(3, 0), (-1, 10), (11, 10)])
def test_wilson_rejects_bad_counts(k, n):
    with pytest.raises(ValueError):
        wilson_interval(k, n)


# --- McNemar exact --------------------------------------------------------------------------


def test_mcnemar_all_discordant_one_way():
    result = mcnemar_exact(*pairs(0, 5))
    assert result == McNemar(n=5, a_only=0, b_only=5, p_value=pytest.approx(0.0625))
    assert result.p_value == 2 * 0.5**5


def test_mcnemar_two_versus_ten():
    # 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (C(12,0) + C(12,1) + C(12,2)) / 2^12
    result = mcnemar_exact(*pairs(2, 10, both_right=30, both_wrong=4))
    assert (result.n, result.a_only, result.b_only) == (46, 2, 10)
    assert result.p_value == pytest.approx(2 * (1 + 12 + 66) / 4096, rel=1e-12)


def test_mcnemar_bentur_example():
    # Airway hyper-responsiveness before/after stem cell transplantation in 21 children
    # (Bentur et al. 2009), table 1 of Fagerland, Lydersen & Laake (2013), BMC Med Res Methodol
    # 13:91: 1 yes/yes, 1 yes/no, 7 no/yes, 12 no/no; exact conditional p = 0.070
    # = 2 * (C(8,0) + C(8,1)) / 2^8.
    result = mcnemar_exact(*pairs(1, 7, both_right=1, both_wrong=12))
    assert result.p_value == pytest.approx(18 / 256, rel=1e-12)
    assert round(result.p_value, 3) == 0.070


def test_mcnemar_no_discordant_pairs_and_balanced():
    assert mcnemar_exact(*pairs(0, 0, both_right=10, both_wrong=3)).p_value == 1.0
    assert mcnemar_exact(*pairs(4, 4, both_right=10)).p_value == pytest.approx(1.0)


def test_mcnemar_symmetric_and_ignores_concordant_pairs():
    a, b = pairs(3, 11, both_right=50, both_wrong=7)
    ab, ba = mcnemar_exact(a, b), mcnemar_exact(b, a)
    assert (ab.a_only, ab.b_only) == (ba.b_only, ba.a_only)
    assert ab.p_value == ba.p_value
    assert ab.p_value == mcnemar_exact(*pairs(3, 11)).p_value


# --- classification rungs and verdicts ------------------------------------------------------


def test_classification_rung():
    correct = np.array([True] * 234 + [False] * 29)  # 29 errors out of 263
    rung = classification_rung(correct)
    assert rung["n"] == 263 and rung["errors"] == 29
    assert rung["error_rate"] == pytest.approx(29 / 263)
    assert rung["ci95"] == list(wilson_interval(29, 263))
    no_errors = classification_rung(np.ones(20, dtype=bool))
    assert no_errors["errors"] == 0
    assert round(no_errors["ci95"][1], 4) == 0.1611  # Newcombe example (c)


def test_verdict_worse():
    # b loses 12 samples a got right: p = 2 / 2^12, error rate up by 12/360 = 3.33 points.
    r = compare_classification("keras", "int8", *pairs(12, 0, both_right=300, both_wrong=48))
    assert r["a"] == "keras" and r["b"] == "int8" and r["n"] == 360
    assert r["error_rate_a"] == pytest.approx(48 / 360)
    assert r["error_rate_b"] == pytest.approx(60 / 360)
    assert r["diff_points"] == pytest.approx(100 * 12 / 360)
    assert (r["a_only_correct"], r["b_only_correct"]) == (12, 0)
    assert r["mcnemar_p"] == pytest.approx(2 / 4096)
    assert r["verdict"] == "worse by 3.3 points, p<0.001"


def test_verdict_better():
    # 1 vs 9 discordant, n=200: p = 2 * (C(10,0) + C(10,1)) / 2^10 = 22 / 1024 = 0.0215;
    # error rate down 8/200 = 4 points.
    r = compare_classification("ptq", "qat", *pairs(1, 9, both_right=180, both_wrong=10))
    assert r["mcnemar_p"] == pytest.approx(22 / 1024)
    assert r["diff_points"] == pytest.approx(-4.0)
    assert r["verdict"] == "better by 4.0 points, p=0.021"


def test_verdict_not_distinguishable():
    # 5 vs 3 discordant: p = 2 * (1 + 8 + 28 + 56) / 2^8 = 0.7266
    r = compare_classification("keras", "int8", *pairs(5, 3, both_right=340, both_wrong=12))
    assert r["mcnemar_p"] == pytest.approx(186 / 256)
    assert r["verdict"] == "not distinguishable at n=360 (p=0.73)"


def test_verdict_identical():
    r = compare_classification("tflm-host", "device", *pairs(0, 0, both_right=350, both_wrong=10))
    assert r["mcnemar_p"] == 1.0 and r["diff_points"] == 0.0
    assert r["verdict"] == "identical right/wrong outcomes on all n=360 samples"


def test_p_formatting_never_contradicts_alpha():
    assert _format_p(0.00049, 0.05) == "p<0.001"
    assert _format_p(0.0078125, 0.05) == "p=0.0078"
    assert _format_p(0.45, 0.05) == "p=0.45"
    assert _format_p(1.0, 0.05) == "p=1"
    assert _format_p(0.0496, 0.05) == "p=0.0496"  # not "p=0.05" next to a "worse by" verdict
    assert _format_p(0.0504, 0.05) == "p=0.05"


# --- regression -----------------------------------------------------------------------------


def test_regression_rung_by_hand():
    # errors 0.5, 0, 1, 0.5: MAE 0.5, RMSE sqrt(1.5 / 4); sample sd sqrt(0.5 / 3);
    # t(0.975, 3) = 3.182446 (any t table), half-width 3.182446 * sqrt(0.5 / 3) / 2.
    rung = regression_rung([1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 4.5])
    assert rung["n"] == 4
    assert rung["mae"] == pytest.approx(0.5)
    assert rung["rmse"] == pytest.approx(math.sqrt(0.375))
    half = 3.182446 * math.sqrt(0.5 / 3) / 2
    assert rung["mae_ci95"][0] == 0.0  # 0.5 - 0.6496 clipped: an MAE cannot be negative
    assert rung["mae_ci95"][1] == pytest.approx(0.5 + half, abs=1e-6)


def test_regression_rung_multi_output_and_single_sample():
    y_true = np.zeros((2, 2))
    y_pred = np.array([[1.0, -3.0], [0.0, 2.0]])
    assert list(absolute_errors(y_true, y_pred)) == [2.0, 1.0]
    rung = regression_rung(y_true, y_pred)
    assert rung["n"] == 2 and rung["mae"] == pytest.approx(1.5)
    assert rung["rmse"] == pytest.approx(math.sqrt(14 / 4))
    single = regression_rung([1.0], [3.0])
    assert single["mae"] == 2.0 and all(math.isnan(x) for x in single["mae_ci95"])


def test_compare_regression_identical_errors():
    errors = np.array([0.1, 0.5, 0.0, 2.0])
    r = compare_regression("keras", "int8", errors, errors.copy())
    assert r["p"] == 1.0 and r["diff"] == 0.0
    assert r["verdict"] == "identical absolute errors on all n=4 samples"


def test_compare_regression_exact_wilcoxon_by_hand():
    # All n differences of one sign and untied: exact two-sided p = 2 / 2^n.
    r = compare_regression("a", "b", np.zeros(5), np.arange(1.0, 6.0))
    assert r["p"] == pytest.approx(2 / 32)
    assert r["verdict"].startswith("not distinguishable at n=5 (p=0.06")
    r = compare_regression("a", "b", np.arange(1.0, 7.0), np.zeros(6))
    assert r["p"] == pytest.approx(2 / 64)
    assert r["mae_a"] == pytest.approx(3.5) and r["diff"] == pytest.approx(-3.5)
    assert r["verdict"] == "MAE lower by 3.5, p=0.031"


def test_compare_regression_clear_shift():
    rng = np.random.default_rng(7)
    a = rng.exponential(0.1, size=300)
    r = compare_regression("keras", "int8", a, a + rng.uniform(0.005, 0.02, size=300))
    assert r["p"] < 0.05
    assert r["verdict"].startswith("MAE higher by 0.01")


# --- sample size ----------------------------------------------------------------------------


def test_connor_sample_size_by_hand():
    # Connor (1987): n = (z_{1-a/2} sqrt(psi) + z_{power} sqrt(psi - delta^2))^2 / delta^2
    p10, p01 = 0.10, 0.05
    psi, delta = p10 + p01, p10 - p01
    n = (norm.ppf(0.975) * math.sqrt(psi) + norm.ppf(0.8) * math.sqrt(psi - delta**2)) ** 2
    n /= delta**2
    assert n == pytest.approx(468.56, abs=0.01)  # (1.96 * 0.3873 + 0.8416 * 0.3841)^2 / 0.0025
    assert mcnemar_sample_size(p10, p01) == math.ceil(n) == 469
    assert mcnemar_sample_size(p01, p10) == 469


def test_sample_size_monotonic():
    gaps = [0.08, 0.04, 0.02, 0.01, 0.005]
    sizes = [mcnemar_sample_size(0.02 + g, 0.02) for g in gaps]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    base = mcnemar_sample_size(0.06, 0.02)
    assert mcnemar_sample_size(0.08, 0.04) > base  # same gap, more discordance
    assert mcnemar_sample_size(0.06, 0.02, alpha=0.01) > base
    assert mcnemar_sample_size(0.06, 0.02, power=0.9) > base


def simulated_power(n: int, p_a_only: float, p_b_only: float, trials: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(trials):
        # 0: a right only, 1: b right only, 2: concordant
        kind = rng.choice(3, size=n, p=[p_a_only, p_b_only, 1 - p_a_only - p_b_only])
        hits += mcnemar_exact(kind != 1, kind != 0).p_value < 0.05
    return hits / trials


def test_sample_size_reaches_requested_power():
    n = mcnemar_sample_size(0.10, 0.05, power=0.8)
    assert 0.7 <= simulated_power(n, 0.10, 0.05, trials=2000, seed=1) <= 0.9
    assert simulated_power(n // 4, 0.10, 0.05, trials=500, seed=2) < 0.5


def test_samples_to_resolve():
    # Minimal discordance: all discordant samples favour the better rung.
    assert samples_to_resolve(0.01, 0.02) == mcnemar_sample_size(0.01, 0.0)
    assert samples_to_resolve(0.02, 0.01) == mcnemar_sample_size(0.0, 0.01)
    # Explicit discordance 3%: a_only - b_only = 1 point, a_only + b_only = 3 points.
    assert samples_to_resolve(0.01, 0.02, discordant_rate=0.03) == mcnemar_sample_size(0.02, 0.01)
    assert samples_to_resolve(0.01, 0.02, discordant_rate=0.03) > samples_to_resolve(0.01, 0.02)
    # "0.9817 vs 0.9811": a 0.06-point gap needs over ten thousand samples even at best.
    assert samples_to_resolve(1 - 0.9817, 1 - 0.9811) > 10_000


@pytest.mark.parametrize(
    "call",
    [
        lambda: samples_to_resolve(0.02, 0.02),  # no gap
        lambda: samples_to_resolve(0.01, 0.02, discordant_rate=0.005),  # below |gap|
        lambda: samples_to_resolve(0.01, 0.02, discordant_rate=0.04),  # more than all errors
        lambda: samples_to_resolve(1.5, 2.0),  # percent instead of fraction
        lambda: mcnemar_sample_size(0.05, 0.05),
        lambda: mcnemar_sample_size(0.7, 0.5),
        lambda: mcnemar_sample_size(0.1, 0.05, power=1.0),
    ],
)
def test_sample_size_rejects_bad_arguments(call):
    with pytest.raises(ValueError):
        call()


# --- input validation -----------------------------------------------------------------------


def test_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar_exact(np.ones(5, dtype=bool), np.ones(6, dtype=bool))
    with pytest.raises(ValueError, match="differ in length"):
        compare_classification("a", "b", np.ones(5, dtype=bool), np.ones(6, dtype=bool))
    with pytest.raises(ValueError, match="differ in length"):
        compare_regression("a", "b", np.ones(5), np.ones(6))
    with pytest.raises(ValueError, match="shape"):
        regression_rung(np.ones(5), np.ones(6))


def test_rejects_empty_arrays():
    with pytest.raises(ValueError, match="empty"):
        classification_rung(np.array([], dtype=bool))
    with pytest.raises(ValueError, match="empty"):
        mcnemar_exact(np.array([], dtype=bool), np.array([], dtype=bool))
    with pytest.raises(ValueError, match="empty"):
        regression_rung([], [])
    with pytest.raises(ValueError, match="empty"):
        compare_regression("a", "b", [], [])


def test_rejects_non_boolean_correct_arrays():
    with pytest.raises(ValueError, match="boolean"):
        classification_rung(np.array([1, 0, 1]))
    with pytest.raises(ValueError, match="boolean"):
        mcnemar_exact(np.array([1.0, 0.0]), np.array([True, False]))
    with pytest.raises(ValueError, match="1-D"):
        classification_rung(np.ones((2, 2), dtype=bool))


def test_rejects_bad_regression_values():
    with pytest.raises(ValueError, match="NaN"):
        regression_rung([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="negative"):
        compare_regression("a", "b", [0.1, -0.2], [0.1, 0.2])
    with pytest.raises(ValueError, match="1-D"):
        compare_regression("a", "b", np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="numeric"):
        regression_rung(np.array([True, False]), np.array([1.0, 0.0]))
