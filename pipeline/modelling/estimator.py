"""The regressor: a line per product, partially pooled toward the catalogue-wide line.

Hours to dispatch are linear in orders placed for each product, with the same noise
everywhere (notebooks/). A real catalogue is long-tailed: a product with thousands of rows
a week gets its own line, a product with one or two rows cannot have one, and treating each
alone (or refusing it) wastes what the rest of the catalogue says. So each product's line
(intercept, slope) is drawn from a catalogue-wide normal distribution whose mean, covariance
and the noise are estimated from all products by maximising their marginal likelihood
(empirical Bayes); each product then gets its posterior mean line, pulled toward the
catalogue line by as much as its own rows leave uncertain. Everything is closed form over
per-product sums, so 10,000 products fit in milliseconds.

The estimator follows scikit-learn's API (`fit(X, y)` on a DataFrame of product_code and
orders_placed, `predict`, `get_params`/`set_params`), so it can be cross-validated and tuned
with scikit-learn's model-selection tools; `prior_scale` scales the learned pooling strength
(1: as learned; 0: one line for all; inf: each product alone where it can be).
What is served is `served_model()`: plain numbers that load without scikit-learn.
"""
import copy
from typing import Any, Optional, Tuple

import numpy as np
import pandas as pd
from scipy.stats import norm
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from pipeline.artifact.model import ProductLinearModel, line_hours, served_hours
from pipeline.codes.numbering import factorize_products, row_positions
from pipeline.data.tranche import ORDERS, PRODUCT
from pipeline.modelling.history import (
    History,
    ProductHistory,
    Transition,
    Week,
    fit_transition,
    from_lines,
    learn,
    to_orders,
)
from pipeline.modelling.pooling import (
    Posterior,
    Sums,
    fit_prior,
    grouped_sums,
    posterior,
    prior_sample,
    sums_of,
)

CENSORED_ROUNDS = 3  # EM rounds for hours floored at zero; the fit moves little after these


class PooledLinearRegressor(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Hours = intercept[product] + slope[product] * orders placed, partially pooled.

    Parameters:
        prior_scale: multiplies the catalogue-wide covariance learned by empirical Bayes.
            1.0 uses it as learned; smaller pools harder, float("inf") does not pool.
        censored_at_zero: hours are floored at zero, so a zero means "zero or less": each
            zero is replaced by its expectation below zero under the current fit and the fit
            repeated (EM for a Tobit model), which removes the upward pull of the floor on
            lines near an empty queue.

    Predictions are floored at zero, as the service floors them; a product not seen in
    training gets the catalogue-wide line.
    """

    def __init__(self, prior_scale: float = 1.0, censored_at_zero: bool = True) -> None:
        self.prior_scale = prior_scale
        self.censored_at_zero = censored_at_zero

    def fit(self, X: pd.DataFrame, y: Any, history: Optional[History] = None, weeks: int = 1
            ) -> "PooledLinearRegressor":
        """Learn the catalogue-wide prior, then each product's posterior line: from this
        week's rows alone, or, given the `history` of the weeks before (`weeks` ago), from
        both (pipeline/modelling/history.py)."""
        codes, products, x = _features(X)
        target = np.asarray(y, dtype=float)
        if len(target) != len(x) or not len(x):
            raise ValueError(f"X has {len(x)} rows and y {len(target)}: need as many, and some")
        if not (np.isfinite(x).all() and np.isfinite(target).all()):
            raise ValueError("orders placed and hours must be finite numbers")
        self.x_centre_ = float(x.mean())
        self.x_scale_ = float(x.std()) or 1.0
        u = (x - self.x_centre_) / self.x_scale_
        sums = grouped_sums(codes, u, target, len(products))
        self.prior_ = fit_prior(prior_sample(sums))
        if self.censored_at_zero and (target <= 0).any():
            sums = self._censored(sums, codes, u, target)
        self.newest_only_ = posterior(sums, self.prior_, self.prior_scale)
        self.product_codes_ = products
        self.rows_ = sums.n.astype(np.int64)
        self.history_at_ = np.full(len(products), -1, dtype=np.int64)
        self.jumped_ = np.zeros(len(products))
        self.transition_: Optional[Transition] = None
        self.week_ = Week(self.prior_, self.x_centre_, self.x_scale_, weeks)
        post = self.newest_only_
        if history is not None and len(history.products.codes):
            post = self._with_history(sums, post, history)
        self.intercepts_, self.slopes_ = self._to_orders(post.mean[:, 0], post.mean[:, 1])
        catalogue = self._to_orders(self.prior_.mean[:1], self.prior_.mean[1:])
        self.catalogue_intercept_ = float(catalogue[0][0])
        self.catalogue_slope_ = float(catalogue[1][0])
        self.posterior_cov_ = post.cov  # in standardised orders
        self.slope_sd_ = np.sqrt(np.clip(post.cov[:, 2], 0, None)) / self.x_scale_
        self.noise_sd_ = float(np.sqrt(self.prior_.noise_var))
        self.n_features_in_ = 2
        self.feature_names_in_ = np.asarray([PRODUCT, ORDERS], dtype=object)
        return self

    def _censored(self, sums: Sums, codes: np.ndarray, u: np.ndarray, target: np.ndarray
                  ) -> Sums:
        """Return the sums with each floored row's hours replaced by their expectation below
        zero under the fit (EM for a Tobit model), refitting the prior each round.

        Each round swaps the floored rows' values for their imputed ones in the sums, so the
        millions of other rows are summed only once; and it needs the lines of the products
        with floored rows only (each product's posterior is its own).
        """
        zero = np.flatnonzero(target <= 0)
        few, at = np.unique(codes[zero], return_inverse=True)
        zero_u, floored, zero_codes = u[zero], target[zero], codes[zero]
        k = len(sums.n)
        censored = sums
        for _ in range(CENSORED_ROUNDS):
            post = posterior(sums_of(censored, few), self.prior_, self.prior_scale)
            line = post.mean[at, 0] + post.mean[at, 1] * zero_u
            sd = np.sqrt(self.prior_.noise_var)
            ratio = np.exp(norm.logpdf(line / sd) - norm.logsf(line / sd))
            imputed = line - sd * ratio  # E[hours | hours <= 0] under the fit
            change = imputed - floored
            censored = sums._replace(
                sy=sums.sy + np.bincount(zero_codes, change, k),
                suy=sums.suy + np.bincount(zero_codes, zero_u * change, k),
                syy=sums.syy + np.bincount(zero_codes, imputed * imputed - floored * floored, k),
            )
            self.prior_ = fit_prior(prior_sample(censored), start_from=self.prior_)
        return censored

    def _with_history(self, sums: Sums, post: Posterior, history: History) -> Posterior:
        """Return the posterior lines with those of products with a history learned from it
        too, the transition fitted from last week's state to this week's prior."""
        self.history_at_ = history.products.codes.find_many(self.product_codes_)
        known = np.flatnonzero(self.history_at_ >= 0)
        if not len(known):
            return post
        at = self.history_at_[known]
        lines, cov = history.products.mean[at], history.products.cov[at]
        rows = sums_of(sums, known)
        self.transition_ = fit_transition(self.week_, rows, lines, cov, history.transition)
        learned, jumped = learn(self.week_, rows, lines, cov, self.transition_)
        mean, cov = post.mean.copy(), post.cov.copy()
        mean[known], cov[known] = learned.mean, learned.cov
        self.jumped_[known] = jumped
        return Posterior(mean, cov)

    def newest_only(self) -> "PooledLinearRegressor":
        """The same fit as if it had no history: this week's rows and the catalogue prior
        alone (for comparison; the same object without a history)."""
        check_is_fitted(self, "intercepts_")
        alone = copy.copy(self)
        post = self.newest_only_
        alone.intercepts_, alone.slopes_ = self._to_orders(post.mean[:, 0], post.mean[:, 1])
        alone.posterior_cov_ = post.cov
        alone.slope_sd_ = np.sqrt(np.clip(post.cov[:, 2], 0, None)) / self.x_scale_
        return alone

    def fitted_history(self) -> ProductHistory:
        """This week's products as seen once: their posterior lines in orders placed."""
        check_is_fitted(self, "intercepts_")
        mean = np.column_stack([self.intercepts_, self.slopes_])
        _, cov = to_orders(mean, self.posterior_cov_, self.x_centre_, self.x_scale_)
        return from_lines(self.product_codes_, mean, cov, np.zeros(len(mean)))

    def _to_orders(self, alpha: np.ndarray, beta: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        slope = beta / self.x_scale_
        return alpha - slope * self.x_centre_, slope

    def product_index(self, product_codes: Any) -> np.ndarray:
        """Return each code's position among the fitted products, -1 for an unseen one."""
        check_is_fitted(self, "intercepts_")
        return row_positions(self.product_codes_, pd.Series(product_codes))

    def predict_line(self, X: pd.DataFrame) -> np.ndarray:
        """Return each row's posterior line value, not floored (for residuals)."""
        _, _, x = _features(X, factorize=False)
        # An unseen product's position, -1, picks the catalogue line appended last.
        line: np.ndarray = line_hours(
            np.append(self.intercepts_, self.catalogue_intercept_),
            np.append(self.slopes_, self.catalogue_slope_), self.product_index(X[PRODUCT]), x,
        )
        return line

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Estimate hours for each row as the service would: never below zero."""
        hours: np.ndarray = served_hours(self.predict_line(X))
        return hours

    def served_model(self) -> ProductLinearModel:
        """Return the plain-number model the service loads (no scikit-learn needed)."""
        check_is_fitted(self, "intercepts_")
        return ProductLinearModel(self.product_codes_, self.intercepts_, self.slopes_)


def _features(X: pd.DataFrame, factorize: bool = True) -> Tuple[np.ndarray, Any, np.ndarray]:
    if not isinstance(X, pd.DataFrame) or not {PRODUCT, ORDERS} <= set(X.columns):
        raise ValueError(f"X must be a DataFrame with columns {PRODUCT!r} and {ORDERS!r}")
    x = X[ORDERS].to_numpy(dtype=float)
    if not factorize:
        return np.empty(0, np.int64), None, x
    codes, products = factorize_products(X[PRODUCT])
    return codes, products, x
