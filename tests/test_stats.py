"""Tests for mcuquant.stats against published or hand-computed values."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from mcuquant.stats import (
    McNemar,
    absolute_errors,
    auc_sample_size,
    classification_rung,
    compare_auc,
    compare_classification,
    compare_regression,
    mcnemar_exact,
    mcnemar_sample_size,
    regression_rung,
    roc_auc_rung,
    samples_to_resolve,
    score_agreement,
    wilson_interval,
)
from mcuquant.stats import _delong_covariance, _format_p, _obuchowski_n_anomalous, _placements


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


def test_regression_rung_per_output_by_hand():
    # Output 0 errors: 1, -1, 3 (|e| 1, 1, 3); output 1 errors: 0, 2, -2 (|e| 0, 2, 2).
    y_true = np.array([[0.0, 10.0], [1.0, 20.0], [2.0, 30.0]])
    y_pred = y_true + np.array([[1.0, 0.0], [-1.0, 2.0], [3.0, -2.0]])
    rung = regression_rung(y_true, y_pred)
    first, second = rung["per_output"]
    assert (first["output"], second["output"]) == (0, 1)
    assert first["mae"] == pytest.approx(5 / 3) and second["mae"] == pytest.approx(4 / 3)
    assert first["rmse"] == pytest.approx(math.sqrt(11 / 3))
    assert second["rmse"] == pytest.approx(math.sqrt(8 / 3))
    # Overall: every output weighs the same; RMSE is the root of the mean of the output MSEs.
    assert rung["mae"] == pytest.approx((5 / 3 + 4 / 3) / 2)
    assert rung["rmse"] == pytest.approx(math.sqrt((11 / 3 + 8 / 3) / 2))
    # Output 0: |e| = 1, 1, 3, sd = sqrt(4/3), t(0.975, 2) = 4.302653 (any t table).
    half = 4.302653 * math.sqrt(4 / 3) / math.sqrt(3)
    assert first["mae_ci95"][0] == 0.0
    assert first["mae_ci95"][1] == pytest.approx(5 / 3 + half, abs=1e-5)
    # The overall interval is on the per-sample mean absolute errors 0.5, 1.5, 2.5 (sd 1).
    assert rung["mae_ci95"][1] == pytest.approx(1.5 + 4.302653 / math.sqrt(3), abs=1e-5)
    # compare_regression keeps working on the per-sample means.
    assert list(absolute_errors(y_true, y_pred)) == [0.5, 1.5, 2.5]


def test_regression_rung_has_no_per_output_for_one_output():
    assert "per_output" not in regression_rung([1.0, 2.0], [1.5, 2.0])
    assert "per_output" not in regression_rung([[1.0], [2.0]], [[1.5], [2.0]])
    # Trailing axes are flattened row-major: (n, 2, 2) is four outputs.
    rung = regression_rung(np.zeros((3, 2, 2)), np.arange(12.0).reshape(3, 2, 2))
    assert [o["mae"] for o in rung["per_output"]] == [4.0, 5.0, 6.0, 7.0]


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


# --- anomaly detection: ROC AUC and DeLong ---------------------------------------------------

# pROC's example data (Robin et al. (2011), BMC Bioinformatics 12:77): 113 patients with an
# aneurysmal subarachnoid haemorrhage (Turck et al. (2010), Intensive Care Medicine 36:107-115),
# outcome Poor = 1, read from pROC's data/aSAH.RData. The expected figures are pROC's own test
# values (tests/testthat/test-var.R, test-ci.auc.R, test-roc.test.R, test-power.roc.test.R).
ASAH_POOR = (
    "00001101001011001011101000000000100110110000000001100010001010011101101111000110100000010000"
    "000000001111110001000"
)
ASAH_WFNS = (
    "11113254125255125225211112121134214541425511241125521251222151125214524414121421232421451154"
    "221113125225552445111"
)
ASAH_S100B = """
0.13 0.14 0.1 0.04 0.13 0.1 0.47 0.16 0.18 0.1 0.12 0.1 0.44 0.71 0.04 0.08 0.49 0.04 0.07 0.33
0.09 0.09 0.07 0.11 0.07 0.17 0.07 0.11 0.13 0.19 0.05 0.16 0.41 0.14 0.34 0.35 0.48 0.09 0.96
0.25 0.5 0.46 0.16 0.07 0.43 0.45 0.11 0.08 0.09 0.86 0.52 0.08 0.06 0.13 2.07 0.1 0.14 0.15 0.07
0.06 0.77 0.05 0.09 0.3 0.03 0.09 0.04 0.23 0.7 0.09 0.27 0.71 0.08 0.26 0.08 0.16 0.09 0.13 0.1
0.08 0.11 0.33 0.11 0.28 0.07 0.1 0.32 0.22 0.07 0.05 0.24 0.38 0.1 0.15 0.08 0.14 0.1 0.07 0.04
0.19 0.56 0.14 0.58 0.32 0.82 0.74 0.15 0.47 0.17 0.44 0.15 0.5 0.48
"""
ASAH_NDKA = """
3.01 8.54 8.09 10.42 17.4 12.75 6 13.2 15.54 6.01 15.96 17.86 5.18 8.9 13.41 20.75 11.6 16.11
32.37 54.82 32.41 49.94 40.34 9.47 6.29 12.53 6.54 6.3 80.3 12.8 9.8 9.81 9.85 18.21 5.03 14.04
21.93 8.02 7.42 8.38 6.59 9.63 13.12 7.96 14.34 41.43 7.63 7.06 12.59 13.56 3.87 9.44 7.66 12.98
419.19 27.19 22.27 9.95 21.22 11.73 10.4 58.83 6.39 11.09 12.22 13.67 17.21 22.63 12.9 9.7 21.57
8.23 72.57 15.54 10.51 10.6 14.57 5.19 9.63 4.61 21.48 17.3 12.71 9.44 11.07 19.46 10.83 5.37
11.97 7.75 9.83 10.55 28.49 8.53 12.57 12.9 46.83 11.68 12.67 9.01 9.57 34.06 11.72 14.26 47.61
11.67 24.58 10.33 13.87 15.89 22.43 6.79 13.45
"""


@pytest.fixture(scope="module")
def asah():
    data = {
        "poor": np.array([int(c) for c in ASAH_POOR]),
        "wfns": np.array([int(c) for c in ASAH_WFNS], dtype=float),
        "s100b": np.array(ASAH_S100B.split(), dtype=float),
        "ndka": np.array(ASAH_NDKA.split(), dtype=float),
    }
    assert {len(v) for v in data.values()} == {113} and data["poor"].sum() == 41
    return data


def pairwise_delong(labels, *scores):
    """AUCs and their DeLong covariance the slow way: every anomalous/normal pair compared.

    DeLong et al. (1988): psi(x, y) = 1 if x > y, 1/2 if x == y, else 0; V10 and V01 are the
    row and column means of psi over anomalous x and normal y; S = S10 / m + S01 / n.
    """
    y = np.asarray(labels) == 1
    v10, v01, aucs = [], [], []
    for s in scores:
        s = np.asarray(s, dtype=float)
        x, z = s[y], s[~y]
        psi = np.array([[1.0 if xi > zj else 0.5 if xi == zj else 0.0 for zj in z] for xi in x])
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    m, n = len(v10[0]), len(v01[0])
    k = len(scores)
    cov = np.empty((k, k))
    for r in range(k):
        for c in range(k):
            s10 = sum((v10[r][i] - aucs[r]) * (v10[c][i] - aucs[c]) for i in range(m)) / (m - 1)
            s01 = sum((v01[r][j] - aucs[r]) * (v01[c][j] - aucs[c]) for j in range(n)) / (n - 1)
            cov[r, c] = s10 / m + s01 / n
    return aucs, cov


def test_delong_matches_proc_on_asah(asah):
    y = asah["poor"]
    # var(roc) in pROC's test-var.R, ci.auc(r.ndka) in test-ci.auc.R.
    for marker, auc, var in (("wfns", 0.823678861788618, 0.00146991470882363),
                             ("ndka", 0.611957994579946, 0.0031908105493913),
                             ("s100b", 0.731368563685637, 0.00266868245717244)):
        rung = roc_auc_rung(y, asah[marker])
        assert rung["auc"] == pytest.approx(auc, rel=1e-12)
        half = norm.ppf(0.975) * math.sqrt(var)
        assert rung["ci95"] == pytest.approx([auc - half, auc + half], rel=1e-10)
        assert (rung["n"], rung["n_normal"], rung["n_anomalous"]) == (113, 72, 41)
        assert rung["ci_method"] == "DeLong"
    assert roc_auc_rung(y, asah["ndka"])["ci95"] == pytest.approx(
        [0.501244999271703, 0.722670989888189], rel=1e-10)


@pytest.mark.parametrize("a, b, z, p", [
    # roc.test(r.wfns, r.s100b) etc. in pROC's test-roc.test.R; pROC's Z is auc(a) - auc(b).
    ("wfns", "s100b", 2.20898359144091, 0.0271757822291882),
    ("wfns", "ndka", 2.79777591868904, 0.00514557970691098),
    ("ndka", "s100b", -1.39077002573558, 0.164295175223054),
])
def test_paired_delong_matches_proc_roc_test(asah, a, b, z, p):
    r = compare_auc(a, b, asah["poor"], asah[a], asah[b])
    assert r["z"] == pytest.approx(-z, rel=1e-10)  # ours is auc_b - auc_a
    assert r["p"] == pytest.approx(p, rel=1e-10)
    swapped = compare_auc(b, a, asah["poor"], asah[b], asah[a])
    assert swapped["z"] == pytest.approx(z, rel=1e-10) and swapped["p"] == pytest.approx(p, rel=1e-10)


def test_paired_delong_verdicts_on_asah(asah):
    y = asah["poor"]
    assert compare_auc("wfns", "s100b", y, asah["wfns"], asah["s100b"])["verdict"] == (
        "AUC lower by 0.0923, p=0.027")
    assert compare_auc("ndka", "wfns", y, asah["ndka"], asah["wfns"])["verdict"] == (
        "AUC higher by 0.212, p=0.0051")
    assert compare_auc("ndka", "s100b", y, asah["ndka"], asah["s100b"])["verdict"] == (
        "not distinguishable at n=113 (p=0.16)")
    # roc.test(r.wfns, r.wfns) in pROC: Z = 0, p = 1.
    same = compare_auc("wfns", "wfns", y, asah["wfns"], asah["wfns"].copy())
    assert (same["z"], same["p"], same["diff"]) == (0.0, 1.0, 0.0)
    assert same["verdict"] == "identical scores ranking on all n=113 samples"


def test_fast_delong_matches_pairwise_definition():
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(37, dtype=int), np.ones(23, dtype=int)]
    rng.shuffle(labels)
    # Integer scores with many ties, a second scorer correlated with the first, a third unrelated.
    a = rng.integers(0, 8, size=60) + 2 * labels
    b = a + rng.integers(-2, 3, size=60)
    c = rng.normal(size=60)
    aucs, cov = pairwise_delong(labels, a, b, c)
    y = labels == 1
    fast = _delong_covariance([_placements(y, s.astype(float)) for s in (a, b, c)])
    np.testing.assert_allclose(fast, cov, rtol=1e-12, atol=1e-15)
    for auc, s in zip(aucs, (a, b, c)):
        assert roc_auc_rung(labels, s)["auc"] == pytest.approx(auc, rel=1e-12)  # sklearn's AUC
        assert np.mean(_placements(y, s.astype(float))[0]) == pytest.approx(auc, rel=1e-12)
    r = compare_auc("a", "b", labels, a, b)
    var_diff = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    assert r["z"] == pytest.approx((aucs[1] - aucs[0]) / math.sqrt(var_diff), rel=1e-9)
    assert r["p"] == pytest.approx(2 * norm.sf(abs(r["z"])), rel=1e-9)
    assert r["correlation"] == pytest.approx(cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1]))


def test_delong_by_hand():
    # Anomalous scores 0.9 and 0.4, normal 0.1, 0.5, 0.2. Placements: anomalous 1 and 2/3
    # (share of normals below), normal 1, 1/2, 1 (share of anomalies above): AUC 5/6.
    # var = var(1, 2/3)/2 + var(1, 1/2, 1)/3 = (1/18)/2 + (1/12)/3 = 1/18.
    labels = [1, 1, 0, 0, 0]
    a = [0.9, 0.4, 0.1, 0.5, 0.2]
    rung = roc_auc_rung(labels, a)
    assert rung["auc"] == pytest.approx(5 / 6)
    assert rung["ci95"][0] == pytest.approx(5 / 6 - norm.ppf(0.975) * math.sqrt(1 / 18))
    assert rung["ci95"][1] == 1.0  # 5/6 + 0.462, clipped
    # b demotes the second anomaly below the normal 0.5 and 0.7: placements 1, 1/3 and 1, 1/2,
    # 1/2, AUC 2/3. Differences b - a: (0, -1/3) and (0, 0, -1/2):
    # var = (1/18)/2 + (1/12)/3 = 1/18, z = (-1/6) / sqrt(1/18) = -sqrt(1/2).
    b = [0.9, 0.3, 0.1, 0.5, 0.7]
    r = compare_auc("a", "b", labels, a, b)
    assert r["auc_b"] == pytest.approx(2 / 3) and r["diff"] == pytest.approx(-1 / 6)
    assert r["z"] == pytest.approx(-math.sqrt(0.5))
    assert r["p"] == pytest.approx(0.4795001, abs=1e-7)  # 2 * Phi(-0.70711), any normal table
    assert r["verdict"] == "not distinguishable at n=5 (p=0.48)"


def test_delong_ties_count_half():
    # The anomaly scored 0.5 ties the normal 0.5: placements 5/6 and 2/3, normal 1, 1/4, 1;
    # AUC 3/4, var = (1/72)/2 + (3/16)/3 = 5/72.
    rung = roc_auc_rung([1, 1, 0, 0, 0], [0.5, 0.4, 0.1, 0.5, 0.2])
    assert rung["auc"] == pytest.approx(0.75)
    half = norm.ppf(0.975) * math.sqrt(5 / 72)
    assert rung["ci95"] == pytest.approx([0.75 - half, 1.0])


def test_perfect_separation_collapses_the_interval():
    rung = roc_auc_rung([0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.8, 0.9])
    assert rung["auc"] == 1.0 and rung["ci95"] == [1.0, 1.0]


def test_same_ranking_is_identical_whatever_the_values():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, size=200)
    mse = rng.exponential(1.0, size=200) + labels
    r = compare_auc("keras-float", "ptq/tflm-host", labels, mse, np.sqrt(mse) * 3.0)
    assert (r["z"], r["p"], r["diff"]) == (0.0, 1.0, 0.0)
    assert r["verdict"] == "identical scores ranking on all n=200 samples"


def test_same_placements_but_other_ranking_is_not_called_identical():
    # b reorders the two anomalies (both above every normal): same placements, zero variance of
    # the difference, but not the same ranking.
    r = compare_auc("a", "b", [1, 1, 0, 0], [4.0, 3.0, 1.0, 2.0], [3.0, 4.0, 1.0, 2.0])
    assert (r["z"], r["p"]) == (0.0, 1.0)
    assert r["verdict"] == "not distinguishable at n=4 (p=1)"


def test_clearly_better_scorer_is_resolved():
    rng = np.random.default_rng(11)
    labels = np.r_[np.zeros(600, dtype=int), np.ones(400, dtype=int)]
    noise = rng.normal(size=1000)
    weak = noise + 0.6 * labels
    strong = noise + 1.2 * labels + rng.normal(scale=0.5, size=1000)
    r = compare_auc("weak", "strong", labels, weak, strong)
    assert r["diff"] > 0.1 and r["p"] < 1e-6
    assert r["verdict"].startswith("AUC higher by 0.1") and r["verdict"].endswith("p<0.001")
    assert 0 < r["correlation"] < 1


def test_score_agreement():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    same_order = score_agreement(a, [1.0, 2.0, 3.0, 4.4])
    assert same_order["spearman"] == pytest.approx(1.0)
    assert same_order["max_abs_difference"] == pytest.approx(0.4)
    assert same_order["max_relative_difference"] == pytest.approx(0.4 / 4.4)
    assert score_agreement(a, a[::-1])["spearman"] == pytest.approx(-1.0)
    # Two swapped neighbours: rho = 1 - 6 * (1 + 1) / (4 * 15) = 0.8.
    assert score_agreement(a, [2.0, 1.0, 3.0, 4.0])["spearman"] == pytest.approx(0.8)
    zeros = score_agreement([0.0, 0.0, 1.0], [0.0, 0.5, 1.0])
    assert zeros["max_relative_difference"] == 1.0  # 0.5 against 0; 0 against 0 counts 0
    assert math.isnan(score_agreement([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])["spearman"])
    assert score_agreement(a, a) == {"spearman": 1.0, "max_abs_difference": 0.0,
                                     "max_relative_difference": 0.0}


@pytest.mark.parametrize("labels, match", [
    ([0, 0, 0, 0], "0 anomalous"),
    ([1, 1, 1, 1], "0 normal"),
    ([1, 0, 0, 0], "1 anomalous"),
    ([0, 1, 2, 1], "0 \\(normal\\) or 1"),
    ([0.0, 1.0, 0.0, 1.0], "dtype float64"),
    ([[0, 1], [0, 1]], "1-D"),
    ([], "empty"),
])
def test_anomaly_rejects_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        roc_auc_rung(labels, np.arange(len(labels), dtype=float))


def test_anomaly_rejects_bad_scores():
    labels = [0, 0, 1, 1]
    with pytest.raises(ValueError, match="shape"):
        roc_auc_rung(labels, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        compare_auc("a", "b", labels, [0.1, 0.2, 0.3, 0.4], [0.1, np.nan, 0.3, 0.4])
    with pytest.raises(ValueError, match="scores_b has shape"):
        compare_auc("a", "b", labels, [0.1, 0.2, 0.3, 0.4], [0.1, 0.2])
    with pytest.raises(ValueError, match="differ in length"):
        score_agreement([0.1, 0.2], [0.1, 0.2, 0.3])


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


def test_auc_sample_size_machinery_matches_proc(asah):
    # power.roc.test(r.ndka, r.wfns, power = 0.9) in pROC's test-power.roc.test.R: 64.77777
    # anomalous and 113.7561 normal samples, with pROC's null variance 2 * (var_a - cov).
    y = asah["poor"] == 1
    m = int(y.sum())
    cov = _delong_covariance([_placements(y, asah["ndka"]), _placements(y, asah["wfns"])]) * m
    delta = 0.823678861788618 - 0.611957994579946  # AUC of wfns - AUC of ndka
    v0 = 2 * (cov[0, 0] - cov[0, 1])
    va = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    n_anomalous = _obuchowski_n_anomalous(delta, v0, va, alpha=0.05, power=0.9)
    assert n_anomalous == pytest.approx(64.77777, abs=1e-5)
    assert n_anomalous * 72 / 41 == pytest.approx(113.7561, abs=1e-4)


def test_auc_sample_size_by_formula(asah):
    # Our null variance keeps the correlation r with a's variance: V0 = 2 var_a (1 - r),
    # from the pairwise DeLong covariance.
    _, cov = pairwise_delong(asah["poor"], asah["ndka"], asah["wfns"])
    cov *= 41
    r = cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1])
    delta = 0.823678861788618 - 0.611957994579946
    n_anomalous = (norm.ppf(0.975) * math.sqrt(2 * cov[0, 0] * (1 - r))
                   + norm.ppf(0.9) * math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])) ** 2 / delta**2
    size = auc_sample_size(asah["poor"], asah["ndka"], asah["wfns"], power=0.9)
    assert size == {"n_anomalous": math.ceil(n_anomalous), "n_normal": math.ceil(n_anomalous * 72 / 41),
                    "n": math.ceil(n_anomalous) + math.ceil(n_anomalous * 72 / 41)}
    assert auc_sample_size(asah["poor"], asah["ndka"], asah["wfns"])["n"] < size["n"]  # power 0.8


def binormal(n_normal, n_anomalous, shift_a, shift_b, rho, rng):
    """Labels and two correlated scores: bivariate normal, anomalies shifted by (shift_a, shift_b)."""
    labels = np.r_[np.zeros(n_normal, dtype=int), np.ones(n_anomalous, dtype=int)]
    noise = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=labels.size)
    return labels, noise[:, 0] + shift_a * labels, noise[:, 1] + shift_b * labels


def test_auc_sample_size_reaches_requested_power():
    rng = np.random.default_rng(21)
    size = auc_sample_size(*binormal(3000, 2000, 1.0, 1.3, 0.7, rng), power=0.8)
    assert size["n_normal"] / size["n_anomalous"] == pytest.approx(1.5, abs=0.02)

    def power(n_normal, n_anomalous, trials):
        hits = sum(compare_auc("a", "b", *binormal(n_normal, n_anomalous, 1.0, 1.3, 0.7, rng))["p"] < 0.05
                   for _ in range(trials))
        return hits / trials

    assert 0.72 <= power(size["n_normal"], size["n_anomalous"], 300) <= 0.88
    assert power(size["n_normal"] // 4, size["n_anomalous"] // 4, 100) < 0.45


def test_auc_sample_size_rejects_no_gap():
    labels = [0, 0, 1, 1]
    with pytest.raises(ValueError, match="no gap"):
        auc_sample_size(labels, [0.1, 0.2, 0.3, 0.4], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="power"):
        auc_sample_size(labels, [0.1, 0.2, 0.3, 0.4], [0.1, 0.3, 0.2, 0.4], power=1.0)


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
