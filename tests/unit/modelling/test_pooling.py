"""The pooled lines' mathematics against the textbook: dense matrices, a product at a time."""
from typing import List, Tuple

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from pipeline.modelling.pooling import (
    Prior,
    grouped_sums,
    negative_log_marginal,
    posterior,
)

PRIOR = Prior(np.array([1.0, 0.5]), np.array([[0.3, 0.05], [0.05, 0.1]]), 0.8)


Rows = Tuple[List[Tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray, np.ndarray]


def products(seed: int = 3) -> Rows:
    """A few products of 1 to 12 rows: each one's (X, y), and all rows as codes, u, y."""
    rng = np.random.default_rng(seed)
    rows = [(rng.normal(size=n), rng.normal(size=n) + 1) for n in (1, 2, 3, 7, 12)]
    codes = np.concatenate([np.full(len(u), i) for i, (u, _) in enumerate(rows)])
    u = np.concatenate([u for u, _ in rows])
    y = np.concatenate([y for _, y in rows])
    return [(np.column_stack([np.ones(len(u)), u]), y) for u, y in rows], codes, u, y


def test_each_posterior_is_the_conjugate_normal_one() -> None:
    dense, codes, u, y = products()
    post = posterior(grouped_sums(codes, u, y, len(dense)), PRIOR)
    for i, (x, target) in enumerate(dense):
        precision = np.linalg.inv(PRIOR.cov) + x.T @ x / PRIOR.noise_var
        cov = np.linalg.inv(precision)
        mean = cov @ (np.linalg.inv(PRIOR.cov) @ PRIOR.mean + x.T @ target / PRIOR.noise_var)
        assert post.mean[i] == pytest.approx(mean, abs=1e-12)
        assert post.cov[i] == pytest.approx([cov[0, 0], cov[0, 1], cov[1, 1]], abs=1e-12)


def test_the_marginal_likelihood_and_its_gradient_are_those_of_the_rows() -> None:
    dense, codes, u, y = products()
    sums = grouped_sums(codes, u, y, len(dense))
    value, d_mean, d_cov, d_var = negative_log_marginal(sums, PRIOR)
    expected = -sum(
        multivariate_normal(x @ PRIOR.mean, x @ PRIOR.cov @ x.T + PRIOR.noise_var * np.eye(len(t)))
        .logpdf(t) for x, t in dense
    )
    assert value == pytest.approx(expected, rel=1e-12)
    step = 1e-6
    for name, analytic in (("mean0", d_mean[0]), ("cov01", 2 * d_cov[0, 1]), ("var", d_var)):
        moved = []
        for sign in (1, -1):
            mean, cov, var = PRIOR.mean.copy(), PRIOR.cov.copy(), PRIOR.noise_var
            if name == "mean0":
                mean[0] += sign * step
            elif name == "cov01":
                cov[0, 1] = cov[1, 0] = cov[0, 1] + sign * step
            else:
                var += sign * step
            moved.append(negative_log_marginal(sums, Prior(mean, cov, var))[0])
        assert analytic == pytest.approx((moved[0] - moved[1]) / (2 * step), rel=1e-5)


def test_without_pooling_each_product_keeps_its_own_least_squares_line() -> None:
    dense, codes, u, y = products()
    post = posterior(grouped_sums(codes, u, y, len(dense)), PRIOR, float("inf"))
    for i, (x, target) in enumerate(dense):
        if len(target) < 3:  # too few rows for a line alone: the catalogue's
            assert post.mean[i] == pytest.approx(PRIOR.mean)
            continue
        line, *_ = np.linalg.lstsq(x, target, rcond=None)
        assert post.mean[i] == pytest.approx(line, abs=1e-10)
        cov = PRIOR.noise_var * np.linalg.inv(x.T @ x)
        assert post.cov[i] == pytest.approx([cov[0, 0], cov[0, 1], cov[1, 1]], abs=1e-10)
