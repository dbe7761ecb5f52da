"""Honest statistics for the accuracy ladder.

Every rung of the ladder (keras-float, keras-qat, litert, litert-ref, tflm-host, device) is scored
on the *same* evaluation samples, so two rungs are compared with *paired* tests:

- classification: each rung gets its error rate with a Wilson score interval, and two rungs are
  compared with McNemar's exact test on the samples where exactly one of them is right;
- regression: each rung gets MAE and RMSE with a t-interval for the MAE, and two rungs are
  compared with the Wilcoxon signed-rank test on the paired absolute errors.

The point is to answer questions such as "int8 scores 0.9817 vs keras 0.9811: real or noise?"
with a p-value and a sentence, and to say how many samples it would take to settle a gap
(:func:`mcnemar_sample_size`, :func:`samples_to_resolve`).

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
    "compare_regression",
    "mcnemar_exact",
    "mcnemar_sample_size",
    "regression_rung",
    "samples_to_resolve",
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


def regression_rung(y_true, y_pred) -> dict:
    """MAE and RMSE of one rung, with a 95% interval for the MAE.

    Returns ``{"n", "mae", "rmse", "mae_ci95": [lo, hi]}`` (``n`` = samples, first axis).
    ``rmse = sqrt(mean((y_pred - y_true)²))`` over all outputs.

    ``mae_ci95`` is the Student t-interval for the mean of the per-sample absolute errors
    ``e_i`` (:func:`absolute_errors`): ``mean(e) ± t_{0.975, n-1} · s / sqrt(n)`` with ``s`` the
    sample standard deviation (ddof=1), lower bound clipped at 0. It is deterministic and rests
    on the central limit theorem: absolute errors are skewed, so read it as approximate for
    small ``n`` (tens of samples). With ``n = 1`` there is no spread estimate and both bounds
    are NaN.
    """
    t, p = _paired_values(y_true, y_pred)
    errors = absolute_errors(t, p)
    n = int(errors.size)
    mae = float(errors.mean())
    rmse = float(np.sqrt(np.mean((p - t) ** 2)))
    if n < 2:
        lo = hi = math.nan
    else:
        half = float(stats.t.ppf(0.975, n - 1)) * float(errors.std(ddof=1)) / math.sqrt(n)
        lo, hi = max(0.0, mae - half), mae + half
    return {"n": n, "mae": mae, "rmse": rmse, "mae_ci95": [lo, hi]}


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
