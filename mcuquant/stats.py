"""Honest statistics for the accuracy ladder.

Every rung of the ladder (keras-float, keras-qat, litert, litert-ref, tflm-host, device) is scored
on the *same* evaluation samples, so two rungs are compared with *paired* tests:

- classification: each rung gets its error rate with a Wilson score interval, and two rungs are
  compared with McNemar's exact test on the samples where exactly one of them is right;
- regression: each rung gets MAE and RMSE (overall and per output) with a t-interval for the
  MAE, and two rungs are compared with the Wilcoxon signed-rank test on the paired absolute
  errors;
- anomaly detection: each rung gets its ROC AUC with DeLong's interval, two rungs are compared
  with DeLong's paired test of correlated AUCs, and their anomaly scores with a rank correlation
  and the largest differences.

The point is to answer questions such as "int8 scores 0.9817 vs keras 0.9811: real or noise?"
with a p-value and a sentence, and to say how many samples it would take to settle a gap
(:func:`mcnemar_sample_size`, :func:`samples_to_resolve`, :func:`auc_sample_size`).

Wrong input here (mismatched lengths, empty arrays, non-boolean "correct" arrays, ...) is a bug in
the calling mcuquant code, not a user error, so it raises :class:`ValueError`.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "McNemar",
    "absolute_errors",
    "classification_rung",
    "compare_classification",
    "auc_sample_size",
    "compare_auc",
    "compare_regression",
    "mcnemar_exact",
    "mcnemar_sample_size",
    "regression_rung",
    "roc_auc_rung",
    "samples_to_resolve",
    "score_agreement",
    "wilson_interval",
]


# --------------------------------------------------------------------------------------------
# Input checks and formatting
# --------------------------------------------------------------------------------------------


def _correct_array(x, name: str) -> np.ndarray:
    """A non-empty 1-D boolean array, e.g. ``y_pred == y_true``."""
    arr = np.asarray(x)
    if arr.dtype != np.bool_:
        raise ValueError(
            f"{name} must be a boolean array (e.g. y_pred == y_true), got dtype {arr.dtype}"
        )
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one entry per sample), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty: there are no samples to score")
    return arr


def _paired_correct(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    a = _correct_array(correct_a, "correct_a")
    b = _correct_array(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ValueError(
            f"paired arrays differ in length: correct_a has {a.size} samples, "
            f"correct_b has {b.size}"
        )
    return a, b


def _numeric_array(x, name: str) -> np.ndarray:
    """A non-empty, finite, real-valued array with at least one dimension (samples first)."""
    arr = np.asarray(x)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must have one entry per sample, got a scalar")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: there are no samples to score")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


def _paired_abs_errors(abs_err_a, abs_err_b) -> tuple[np.ndarray, np.ndarray]:
    a = _numeric_array(abs_err_a, "abs_err_a")
    b = _numeric_array(abs_err_b, "abs_err_b")
    for name, arr in (("abs_err_a", a), ("abs_err_b", b)):
        if arr.ndim != 1:
            raise ValueError(
                f"{name} must be 1-D (one absolute error per sample), got shape {arr.shape}; "
                "see absolute_errors()"
            )
        if np.any(arr < 0):
            raise ValueError(f"{name} contains negative values: pass absolute errors")
    if a.shape != b.shape:
        raise ValueError(
            f"paired arrays differ in length: abs_err_a has {a.size} samples, "
            f"abs_err_b has {b.size}"
        )
    return a, b


def _check_probability(value: float, name: str) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value}")


def _format_p(p: float, alpha: float) -> str:
    """``p<0.001``, else ``p=`` with two significant digits.

    More digits are used when two would round the value across ``alpha`` (0.0496 is shown as
    ``p=0.0496``, not ``p=0.05``, so the text never contradicts the verdict).
    """
    if p < 0.001:
        return "p<0.001"
    for digits in range(2, 7):
        text = f"{p:.{digits}g}"
        if (float(text) < alpha) == (p < alpha):
            break
    return f"p={text}"


def _format_points(points: float) -> str:
    """Percentage points: one decimal from 1 point up, two significant digits below."""
    return f"{points:.1f}" if points >= 1.0 else f"{points:.2g}"


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``k / n`` (no continuity correction).

    Wilson, E. B. (1927), "Probable inference, the law of succession, and statistical
    inference", JASA 22:209-212; method 3 in Newcombe, R. G. (1998), "Two-sided confidence
    intervals for the single proportion: comparison of seven methods", Statistics in Medicine
    17:857-872. With ``z`` the ``(1 + confidence) / 2`` normal quantile and ``p = k / n``::

        (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)

    Unlike the normal ("Wald") interval it stays inside [0, 1] and does not collapse to a point
    at ``k = 0`` or ``k = n``, which matters for error counts of a few samples. Computed by
    ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``.
    """
    k = operator.index(k)
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 <= k <= n:
        raise ValueError(f"k must be between 0 and n={n}, got {k}")
    _check_probability(confidence, "confidence")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class McNemar:
    """McNemar's exact test of two classifiers on the same samples.

    ``a_only``: samples ``a`` got right and ``b`` got wrong; ``b_only``: the reverse. Only these
    discordant pairs carry information about which one is better.
    """

    n: int
    a_only: int
    b_only: int
    p_value: float


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """McNemar's exact (conditional) test on paired right/wrong outcomes.

    Under the null hypothesis that both classifiers have the same accuracy, each of the
    ``m = a_only + b_only`` discordant pairs is equally likely to go either way, so
    ``a_only ~ Binomial(m, 1/2)`` and the two-sided p-value is
    ``min(1, 2 · P(X <= min(a_only, b_only)))`` (McNemar, Q. (1947), Psychometrika 12:153-157;
    the exact conditional version as in Fagerland, Lydersen & Laake (2013), BMC Medical Research
    Methodology 13:91). Computed by ``scipy.stats.binomtest(a_only, m, 0.5)``; ``p = 1.0``
    when there is no discordant pair. The exact test is conservative: its real type I error is
    at most ``alpha``, often below it.

    ``correct_a`` and ``correct_b`` are boolean arrays, one entry per sample, same order.
    """
    a, b = _paired_correct(correct_a, correct_b)
    a_only = int(np.count_nonzero(a & ~b))
    b_only = int(np.count_nonzero(b & ~a))
    discordant = a_only + b_only
    p_value = 1.0 if discordant == 0 else float(stats.binomtest(a_only, discordant, 0.5).pvalue)
    return McNemar(n=int(a.size), a_only=a_only, b_only=b_only, p_value=p_value)


def classification_rung(correct: np.ndarray) -> dict:
    """Error rate of one rung with its 95% Wilson interval (see :func:`wilson_interval`).

    Returns ``{"n", "errors", "error_rate", "ci95": [lo, hi]}``, the interval being on the
    error rate.
    """
    arr = _correct_array(correct, "correct")
    n = int(arr.size)
    errors = n - int(np.count_nonzero(arr))
    lo, hi = wilson_interval(errors, n)
    return {"n": n, "errors": errors, "error_rate": errors / n, "ci95": [lo, hi]}


def compare_classification(
    a: str, b: str, correct_a: np.ndarray, correct_b: np.ndarray, alpha: float = 0.05
) -> dict:
    """Compare rung ``b`` against rung ``a`` on the same samples with :func:`mcnemar_exact`.

    Returns ``{"a", "b", "n", "error_rate_a", "error_rate_b", "diff_points", "a_only_correct",
    "b_only_correct", "mcnemar_p", "verdict"}``. ``diff_points`` is
    ``100 · (error_rate_b - error_rate_a)``: percentage points of *error rate*, so positive means
    ``b`` is worse. ``verdict`` is one line about ``b`` relative to ``a``:

    - ``"identical right/wrong outcomes on all n=360 samples"`` when no sample is discordant
      (the predicted classes of wrong samples may still differ);
    - ``"not distinguishable at n=360 (p=0.45)"`` when ``p >= alpha``;
    - ``"worse by 2.2 points, p=0.003"`` / ``"better by 1.1 points, p=0.02"`` otherwise.
    """
    _check_probability(alpha, "alpha")
    ca, cb = _paired_correct(correct_a, correct_b)
    test = mcnemar_exact(ca, cb)
    n = test.n
    error_rate_a = (n - int(np.count_nonzero(ca))) / n
    error_rate_b = (n - int(np.count_nonzero(cb))) / n
    # errors_b - errors_a = a_only - b_only (concordant samples cancel); counts avoid rounding.
    diff_points = 100.0 * (test.a_only - test.b_only) / n
    if test.a_only + test.b_only == 0:
        verdict = f"identical right/wrong outcomes on all n={n} samples"
    elif test.p_value >= alpha:
        verdict = f"not distinguishable at n={n} ({_format_p(test.p_value, alpha)})"
    else:
        direction = "worse" if diff_points > 0 else "better"
        verdict = (
            f"{direction} by {_format_points(abs(diff_points))} points, "
            f"{_format_p(test.p_value, alpha)}"
        )
    return {
        "a": a,
        "b": b,
        "n": n,
        "error_rate_a": error_rate_a,
        "error_rate_b": error_rate_b,
        "diff_points": diff_points,
        "a_only_correct": test.a_only,
        "b_only_correct": test.b_only,
        "mcnemar_p": test.p_value,
        "verdict": verdict,
    }


# --------------------------------------------------------------------------------------------
# Regression
# --------------------------------------------------------------------------------------------


def _paired_values(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = _numeric_array(y_true, "y_true")
    p = _numeric_array(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    return t, p


def absolute_errors(y_true, y_pred) -> np.ndarray:
    """One absolute error per sample: ``|y_pred - y_true|``, averaged over any output axes.

    Arrays are ``(n,)`` or ``(n, ...)`` with samples on the first axis. The mean of the result
    is the MAE over all outputs, and it is the per-sample quantity the paired test in
    :func:`compare_regression` expects.
    """
    t, p = _paired_values(y_true, y_pred)
    return np.abs(p - t).reshape(t.shape[0], -1).mean(axis=1)


def _mae_interval(errors: np.ndarray) -> list[float]:
    """Student t 95% interval for the mean of per-sample absolute errors, clipped at 0."""
    n = errors.size
    if n < 2:
        return [math.nan, math.nan]
    mae = float(errors.mean())
    half = float(stats.t.ppf(0.975, n - 1)) * float(errors.std(ddof=1)) / math.sqrt(n)
    return [max(0.0, mae - half), mae + half]


def regression_rung(y_true, y_pred) -> dict:
    """MAE and RMSE of one rung, with a 95% interval for the MAE, overall and per output.

    Returns ``{"n", "mae", "rmse", "mae_ci95": [lo, hi]}`` (``n`` = samples, first axis), plus
    ``"per_output"`` when each sample has more than one output (``y`` of shape ``(n, K)``, K > 1,
    or ``(n, ...)`` with its trailing axes flattened in row-major order):
    ``[{"output": k, "mae", "rmse", "mae_ci95": [lo, hi]}, ...]``, one entry per output ``k``.

    The overall figures weigh every output equally: ``mae`` is the mean of the per-output MAEs
    (= the mean of :func:`absolute_errors`), ``rmse = sqrt(mean((y_pred - y_true)²))`` over all
    outputs, i.e. the root of the mean of the per-output MSEs (not the mean of per-output RMSEs).
    Outputs on different scales therefore count in their own units: an output in thousands
    dominates one in units.

    ``mae_ci95`` is the Student t-interval for the mean of the per-sample absolute errors
    ``e_i`` (:func:`absolute_errors` overall, ``|y_pred[i, k] - y_true[i, k]|`` per output):
    ``mean(e) ± t_{0.975, n-1} · s / sqrt(n)`` with ``s`` the sample standard deviation
    (ddof=1), lower bound clipped at 0. It is deterministic and rests on the central limit
    theorem: absolute errors are skewed, so read it as approximate for small ``n`` (tens of
    samples). With ``n = 1`` there is no spread estimate and both bounds are NaN.
    """
    t, p = _paired_values(y_true, y_pred)
    n = int(t.shape[0])
    diff = (p - t).reshape(n, -1)
    errors = np.abs(diff).mean(axis=1)
    result = {
        "n": n,
        "mae": float(errors.mean()),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "mae_ci95": _mae_interval(errors),
    }
    if diff.shape[1] > 1:
        result["per_output"] = [
            {
                "output": k,
                "mae": float(np.abs(column).mean()),
                "rmse": float(np.sqrt(np.mean(column**2))),
                "mae_ci95": _mae_interval(np.abs(column)),
            }
            for k, column in enumerate(diff.T)
        ]
    return result


def compare_regression(a: str, b: str, abs_err_a, abs_err_b, alpha: float = 0.05) -> dict:
    """Compare rung ``b`` against rung ``a`` on paired per-sample absolute errors.

    Test: Wilcoxon signed-rank on ``d_i = abs_err_b[i] - abs_err_a[i]`` (Wilcoxon, F. (1945),
    Biometrics Bulletin 1:80-83), by ``scipy.stats.wilcoxon`` with its defaults: zero
    differences are dropped (like McNemar's concordant pairs), exact distribution for small
    untied samples, normal approximation otherwise. ``p = 1.0`` when every ``d_i`` is zero. It
    tests whether the differences are symmetric about zero (a location shift), not the mean.

    Returns ``{"a", "b", "n", "mae_a", "mae_b", "diff", "p", "verdict"}`` with
    ``diff = mae_b - mae_a``. ``verdict`` is one line about ``b`` relative to ``a``:
    ``"identical absolute errors on all n=... samples"``, ``"not distinguishable at n=...
    (p=...)"`` when ``p >= alpha``, else ``"MAE higher by 0.012, p=0.004"`` /
    ``"MAE lower by ..."``.
    """
    _check_probability(alpha, "alpha")
    ea, eb = _paired_abs_errors(abs_err_a, abs_err_b)
    n = int(ea.size)
    d = eb - ea
    mae_a, mae_b = float(ea.mean()), float(eb.mean())
    diff = mae_b - mae_a
    if not np.any(d):
        p = 1.0
        verdict = f"identical absolute errors on all n={n} samples"
    else:
        p = float(stats.wilcoxon(d).pvalue)
        if p >= alpha:
            verdict = f"not distinguishable at n={n} ({_format_p(p, alpha)})"
        else:
            direction = "higher" if diff > 0 else "lower"
            verdict = f"MAE {direction} by {abs(diff):.3g}, {_format_p(p, alpha)}"
    return {
        "a": a,
        "b": b,
        "n": n,
        "mae_a": mae_a,
        "mae_b": mae_b,
        "diff": diff,
        "p": p,
        "verdict": verdict,
    }


# --------------------------------------------------------------------------------------------
# Anomaly detection
# --------------------------------------------------------------------------------------------


def _anomaly_inputs(labels, *scores) -> tuple[np.ndarray, list[np.ndarray]]:
    """Boolean labels (True = anomalous) and 1-D score arrays of the same length.

    DeLong's variance estimates a spread within each class, so both classes need at least two
    samples.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D (one label per sample), got shape {y.shape}")
    if y.size == 0:
        raise ValueError("labels is empty: there are no samples to score")
    if y.dtype != np.bool_ and not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"labels must be 0 (normal) / 1 (anomalous) integers or booleans, got dtype {y.dtype}"
        )
    if not np.all((y == 0) | (y == 1)):
        values = sorted(set(y.tolist()))[:10]
        raise ValueError(f"labels must be 0 (normal) or 1 (anomalous), got values {values}")
    y = y.astype(bool)
    n_anomalous = int(np.count_nonzero(y))
    for count, name in ((n_anomalous, "anomalous (1)"), (y.size - n_anomalous, "normal (0)")):
        if count < 2:
            raise ValueError(
                f"labels have {count} {name} sample(s): the AUC and its DeLong variance need at "
                "least 2 normal and 2 anomalous samples"
            )
    arrays = []
    for i, s in enumerate(scores):
        name = "scores" if len(scores) == 1 else f"scores_{'ab'[i]}"
        arr = _numeric_array(s, name)
        if arr.shape != y.shape:
            raise ValueError(f"{name} has shape {arr.shape} but labels has shape {y.shape}")
        arrays.append(arr)
    return y, arrays


def _placements(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components (placement values) from midranks, after Sun & Xu (2014).

    For anomalous sample ``i``: ``v10[i]`` = share of normal samples scored below it (ties count
    half); for normal sample ``j``: ``v01[j]`` = share of anomalous samples scored above it. Both
    average to the AUC. With ``T`` the midranks in the pooled sample and ``T_x``, ``T_y`` those
    within each class, ``T[i] - T_x[i]`` counts the normal samples below anomalous ``i`` (ties
    half) and ``T[j] - T_y[j]`` the anomalous ones below normal ``j``: O(N log N) instead of
    comparing every pair.
    """
    pos, neg = scores[y], scores[~y]
    m, n = pos.size, neg.size
    pooled = stats.rankdata(np.concatenate([pos, neg]))
    v10 = (pooled[:m] - stats.rankdata(pos)) / n
    v01 = 1.0 - (pooled[m:] - stats.rankdata(neg)) / m
    return v10, v01


def _delong_covariance(placements: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """DeLong's covariance matrix (k x k) of k AUC estimates, from their :func:`_placements`.

    ``S = S10 / m + S01 / n`` with ``S10``, ``S01`` the sample covariances (ddof=1) of the
    placement values over the ``m`` anomalous and ``n`` normal samples (DeLong et al. 1988, eq. 4).
    """
    v10 = np.array([p[0] for p in placements])
    v01 = np.array([p[1] for p in placements])
    return np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]


def _auc(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores))


def roc_auc_rung(labels, scores) -> dict:
    """ROC AUC of one anomaly-detection rung with its 95% DeLong interval.

    ``labels``: 0 (normal) / 1 (anomalous) per sample; ``scores``: the anomaly score per sample,
    higher = more anomalous (for an autoencoder: the per-sample reconstruction MSE). Needs at least
    2 samples of each class (ValueError otherwise).

    Returns ``{"n", "n_normal", "n_anomalous", "auc", "ci95": [lo, hi], "ci_method": "DeLong"}``.
    ``auc`` is ``sklearn.metrics.roc_auc_score``: the probability that a random anomalous sample
    scores higher than a random normal one, ties counting half. ``ci95`` is
    ``auc ± z_{0.975} · sqrt(var)`` with DeLong's nonparametric variance (DeLong, E. R., DeLong,
    D. M. & Clarke-Pearson, D. L. (1988), "Comparing the areas under two or more correlated
    receiver operating characteristic curves: a nonparametric approach", Biometrics 44:837-845),
    computed from midranks as in Sun, X. & Xu, W. (2014), "Fast implementation of DeLong's
    algorithm for comparing the areas under correlated receiver operating characteristic
    curves", IEEE Signal Processing Letters 21:1389-1393. The normal interval can cross 1 (or 0)
    near a perfect detector; its bounds are clipped to [0, 1] (as pROC does). At AUC = 1 the
    variance estimate is 0 and the interval collapses to [1, 1]: read it as "no overlap seen on
    these samples", not as certainty.
    """
    y, (s,) = _anomaly_inputs(labels, scores)
    auc = _auc(y, s)
    var = float(_delong_covariance([_placements(y, s)])[0, 0])
    half = float(stats.norm.ppf(0.975)) * math.sqrt(max(var, 0.0))
    n_anomalous = int(np.count_nonzero(y))
    return {
        "n": int(y.size),
        "n_normal": int(y.size) - n_anomalous,
        "n_anomalous": n_anomalous,
        "auc": auc,
        "ci95": [max(0.0, auc - half), min(1.0, auc + half)],
        "ci_method": "DeLong",
    }


def compare_auc(a: str, b: str, labels, scores_a, scores_b, alpha: float = 0.05) -> dict:
    """Compare rung ``b``'s AUC against rung ``a``'s on the same samples: DeLong's paired test.

    Both AUCs are estimated on the same samples, so they are correlated; DeLong et al. (1988)
    estimate their covariance from the placement values (see :func:`roc_auc_rung`), and
    ``z = (auc_b - auc_a) / sqrt(var_a + var_b - 2·cov)`` is compared with the standard normal,
    two-sided. Needs at least 2 samples of each class.

    Returns ``{"a", "b", "n", "auc_a", "auc_b", "diff", "z", "p", "correlation", "verdict"}`` with
    ``diff = auc_b - auc_a`` (positive: ``b`` separates anomalies better) and ``correlation`` the
    estimated correlation of the two AUC estimates (NaN when one has zero variance, e.g. AUC = 1).
    When the variance of the difference is 0 (every sample's placement value is the same for both
    rungs) ``z = 0, p = 1`` if the AUCs are equal; a non-zero gap with zero variance, possible only
    on a handful of samples, gives ``z = ±inf, p = 0``. ``verdict`` is one line about ``b``
    relative to ``a``:

    - ``"identical scores ranking on all n=... samples"`` when both score arrays order the samples
      identically (ties included): same ROC curve, same AUC, ``p = 1``;
    - ``"not distinguishable at n=... (p=...)"`` when ``p >= alpha``;
    - ``"AUC lower by 0.015, p=0.03"`` / ``"AUC higher by ..."`` otherwise.
    """
    _check_probability(alpha, "alpha")
    y, (sa, sb) = _anomaly_inputs(labels, scores_a, scores_b)
    n = int(y.size)
    auc_a, auc_b = _auc(y, sa), _auc(y, sb)
    diff = auc_b - auc_a
    (va10, va01), (vb10, vb01) = placements = _placements(y, sa), _placements(y, sb)
    cov = _delong_covariance(list(placements))
    # The variance of the difference from the differences themselves, so that equal placement
    # values give exactly 0 (var_a + var_b - 2 cov may leave rounding noise of either sign).
    var_diff = float(
        np.var(vb10 - va10, ddof=1) / va10.size + np.var(vb01 - va01, ddof=1) / va01.size
    )
    if cov[0, 0] > 0 and cov[1, 1] > 0:
        correlation = float(cov[0, 1] / math.sqrt(cov[0, 0] * cov[1, 1]))
    else:
        correlation = math.nan
    if var_diff > 0:
        z = diff / math.sqrt(var_diff)
        p = float(2 * stats.norm.sf(abs(z)))
    elif diff == 0:
        z, p = 0.0, 1.0
    else:
        z, p = math.copysign(math.inf, diff), 0.0
    if np.array_equal(stats.rankdata(sa), stats.rankdata(sb)):
        verdict = f"identical scores ranking on all n={n} samples"
    elif p >= alpha:
        verdict = f"not distinguishable at n={n} ({_format_p(p, alpha)})"
    else:
        direction = "higher" if diff > 0 else "lower"
        verdict = f"AUC {direction} by {abs(diff):.3g}, {_format_p(p, alpha)}"
    return {
        "a": a,
        "b": b,
        "n": n,
        "auc_a": auc_a,
        "auc_b": auc_b,
        "diff": diff,
        "z": z,
        "p": p,
        "correlation": correlation,
        "verdict": verdict,
    }


def score_agreement(scores_a, scores_b) -> dict:
    """How closely two rungs' anomaly scores agree, sample by sample.

    Returns ``{"spearman", "max_abs_difference", "max_relative_difference"}``:

    - ``spearman``: Spearman's rank correlation (``scipy.stats.spearmanr``), 1.0 when both rungs
      rank the samples the same way; NaN when either array is constant (no ranking to compare);
    - ``max_abs_difference``: ``max |b_i - a_i|``, in score units;
    - ``max_relative_difference``: ``max |b_i - a_i| / max(|a_i|, |b_i|)`` (0 where both are 0),
      a fraction of the larger of the two scores, at most 1 for non-negative scores such as MSEs.
    """
    a = _numeric_array(scores_a, "scores_a")
    b = _numeric_array(scores_b, "scores_b")
    for name, arr in (("scores_a", a), ("scores_b", b)):
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one score per sample), got shape {arr.shape}")
    if a.shape != b.shape:
        raise ValueError(
            f"paired arrays differ in length: scores_a has {a.size} samples, "
            f"scores_b has {b.size}"
        )
    constant = np.ptp(a) == 0 or np.ptp(b) == 0
    spearman = math.nan if constant else float(stats.spearmanr(a, b).statistic)
    gap = np.abs(b - a)
    scale = np.maximum(np.abs(a), np.abs(b))
    relative = np.divide(gap, scale, out=np.zeros_like(gap), where=scale > 0)
    return {
        "spearman": spearman,
        "max_abs_difference": float(gap.max()),
        "max_relative_difference": float(relative.max()),
    }


# --------------------------------------------------------------------------------------------
# Sample size
# --------------------------------------------------------------------------------------------


def mcnemar_sample_size(
    p_a_only: float, p_b_only: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Paired samples needed for McNemar's test to detect a difference, rounded up.

    Connor, R. J. (1987), "Sample size for testing differences in proportions for the
    paired-sample design", Biometrics 43:207-211. With ``p_a_only`` and ``p_b_only`` the
    probabilities that a sample is right for ``a`` only / for ``b`` only, ``psi = p_a_only +
    p_b_only`` (discordance), ``delta = p_a_only - p_b_only`` (accuracy gap)::

        n = (z_{1-alpha/2} · sqrt(psi) + z_{power} · sqrt(psi - delta²))² / delta²

    a two-sided normal approximation. For the exact test it is slightly optimistic when the
    expected number of discordant pairs ``n · psi`` is small (a dozen or so).
    """
    _check_probability(alpha, "alpha")
    _check_probability(power, "power")
    if p_a_only < 0 or p_b_only < 0 or p_a_only + p_b_only > 1:
        raise ValueError(
            "p_a_only and p_b_only must be non-negative probabilities summing to at most 1, "
            f"got {p_a_only} and {p_b_only}"
        )
    if p_a_only == p_b_only:
        raise ValueError("p_a_only == p_b_only: there is no difference to detect")
    psi = p_a_only + p_b_only
    delta = p_a_only - p_b_only
    z_alpha = stats.norm.ppf(1 - alpha / 2)
    z_power = stats.norm.ppf(power)
    n = (z_alpha * math.sqrt(psi) + z_power * math.sqrt(psi - delta**2)) ** 2 / delta**2
    # Round up, but don't let floating-point noise in an exact integer (e.g. 40.000000001) add one.
    return math.ceil(n - 1e-9)


def samples_to_resolve(
    error_rate_a: float,
    error_rate_b: float,
    discordant_rate: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Test samples needed for McNemar's test to resolve the gap between two error rates.

    Error rates are fractions (0.0183, not 1.83). The gap ``error_rate_b - error_rate_a`` equals
    ``p_a_only - p_b_only``; ``discordant_rate`` (``p_a_only + p_b_only``, the fraction of
    samples where exactly one of the two is right) is split accordingly and passed to
    :func:`mcnemar_sample_size`.

    When ``discordant_rate`` is None the *minimal* discordance is assumed: ``discordant_rate =
    |gap|``, i.e. every discordant sample favours the better rung. The sample size grows with
    the discordance, so this is a lower bound; real rungs usually also disagree the other way
    (measure the discordant rate from a McNemar run and pass it for a realistic figure).
    """
    for name, value in (("error_rate_a", error_rate_a), ("error_rate_b", error_rate_b)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a fraction between 0 and 1, got {value}")
    gap = error_rate_b - error_rate_a
    if gap == 0:
        raise ValueError("error_rate_a == error_rate_b: there is no gap to resolve")
    if discordant_rate is None:
        discordant_rate = abs(gap)
    # Each discordant sample is an error of exactly one rung, so the discordance is bounded by
    # the errors (and the correct answers) the two rungs have between them.
    upper = min(error_rate_a + error_rate_b, 2.0 - error_rate_a - error_rate_b)
    if not abs(gap) <= discordant_rate <= upper:
        raise ValueError(
            f"discordant_rate must be between |gap| = {abs(gap):.6g} and {upper:.6g} for error "
            f"rates {error_rate_a} and {error_rate_b}, got {discordant_rate}"
        )
    p_a_only = (discordant_rate + gap) / 2
    p_b_only = (discordant_rate - gap) / 2
    return mcnemar_sample_size(p_a_only, p_b_only, alpha=alpha, power=power)


def _obuchowski_n_anomalous(
    delta: float, v0: float, va: float, alpha: float, power: float
) -> float:
    """Obuchowski & McClish (1997) eq. 2: anomalous samples for a two-sided test of an AUC gap.

    ``v0``, ``va``: variance of the AUC difference times the number of anomalous samples, under
    the null and the alternative hypothesis.
    """
    z_alpha = stats.norm.ppf(1 - alpha / 2)
    z_power = stats.norm.ppf(power)
    return (z_alpha * math.sqrt(v0) + z_power * math.sqrt(va)) ** 2 / delta**2


def auc_sample_size(labels, scores_a, scores_b, alpha: float = 0.05, power: float = 0.8) -> dict:
    """Samples needed for DeLong's paired test (:func:`compare_auc`) to resolve the AUC gap seen.

    Obuchowski, N. A. & McClish, D. K. (1997), "Sample size determination for diagnostic accuracy
    studies involving binormal ROC curve indices", Statistics in Medicine 16:1529-1542, eq. 2::

        n_anomalous = (z_{1-alpha/2} · sqrt(V0) + z_{power} · sqrt(VA))² / delta²

    with ``delta = auc_b - auc_a`` and ``V0``, ``VA`` the variance of the AUC difference per
    anomalous sample under the null and the alternative. Both come from the measured samples, as
    pROC's ``power.roc.test`` does for two paired ROC curves: DeLong's variances and covariance
    (see :func:`compare_auc`) times the number of anomalous samples, which stays constant when
    the sample grows with the same share of anomalies. ``VA = var_a + var_b - 2·cov``. The null
    takes rung ``a`` as the reference (both rungs as accurate as ``a``, with the measured
    correlation ``r`` of the two AUC estimates kept): ``V0 = 2·var_a·(1 - r)``. pROC uses
    ``2·(var_a - cov)`` instead, the same when ``var_a = var_b``, but negative when ``b``'s
    variance is the larger one and ``r`` is close to 1 — the usual case for two quantized rungs
    of one model. The normal samples keep the measured ratio to the anomalous ones.

    Returns ``{"n", "n_anomalous", "n_normal"}``, each rounded up and at least 2 (the fewest
    samples of each class DeLong's variance takes). It is a normal approximation built on the
    measured variances, so it is as reliable as those are (tens of samples of each class or
    more); a gap measured on few samples is itself uncertain. Raises ValueError when both AUCs
    are equal (no gap to resolve).
    """
    _check_probability(alpha, "alpha")
    _check_probability(power, "power")
    y, (sa, sb) = _anomaly_inputs(labels, scores_a, scores_b)
    delta = _auc(y, sb) - _auc(y, sa)
    if delta == 0:
        raise ValueError("both rungs have the same AUC: there is no gap to resolve")
    m = int(np.count_nonzero(y))
    cov = _delong_covariance([_placements(y, sa), _placements(y, sb)]) * m
    var_a, var_b, cov_ab = float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1])
    # With a constant placement vector (AUC 0 or 1) the covariance is 0: no correlation to keep.
    r = cov_ab / math.sqrt(var_a * var_b) if var_a > 0 and var_b > 0 else 0.0
    v0 = 2.0 * var_a * (1.0 - r)
    va = max(var_a + var_b - 2.0 * cov_ab, 0.0)
    n_anomalous = _obuchowski_n_anomalous(delta, v0, va, alpha, power)
    # Round up, but don't let floating-point noise in an exact integer add one.
    anomalous = max(2, math.ceil(n_anomalous - 1e-9))
    normal = max(2, math.ceil(n_anomalous * (y.size - m) / m - 1e-9))
    return {"n": anomalous + normal, "n_anomalous": anomalous, "n_normal": normal}
