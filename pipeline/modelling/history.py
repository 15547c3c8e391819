"""Learn from every week: each product's line carried from week to week, with how sure it is.

A spare-parts catalogue is mostly rare parts: a week gives most products one or two orders,
too few for a line of their own. So each week starts from what the weeks before taught
about every product (its posterior line, in orders placed, and its covariance: the state),
and only the newest tranche and that state are read. A dynamic linear model (West &
Harrison), in three steps from last week's state to this week's prior:

1. Map: every carried line is shifted and scaled alike, `shift + scale * line`, so that a
   change across the whole warehouse (every rate up by a quarter) moves every product's
   line in the week it shows, the rare ones' with the rest.
2. Forget, toward the catalogue: the mapped line keeps the share `keep` of its information
   each week; the rest is the catalogue line's, this week's empirical-Bayes prior
   (stabilised forgetting, a geometric mixture of the two normals). A product seen every
   week never becomes certain ("covariance windup"); one unseen for a year is back to the
   catalogue's line and uncertainty.
3. Jump: with chance `jump`, a product's line is new this week, drawn from the catalogue
   line, not from its past: a part whose own rows disagree with its history follows them at
   once (the week's posterior is the two hypotheses' mixture, weighted by how well each
   explains its rows, then matched by one normal).

The transition's numbers are learned, not set by hand: each week they maximise the marginal
likelihood of the new tranche's rows of products with a history (a sample of them), the
lines integrated out, as the catalogue prior is learned. The state lives in orders placed
(hours, hours per order); each week's fit works in that week's standardised orders.
"""
from typing import Any, Dict, NamedTuple, Tuple

import numpy as np
from scipy import optimize, special

from pipeline.codes.product_codes import ProductCodes
from pipeline.modelling.pooling import (
    CHUNK_PRODUCTS,
    Posterior,
    Prior,
    Sums,
    marginals,
    sums_of,
    stacked,
    packed,
    inverse_2x2,
)

MAX_UNSEEN_WEEKS = 52  # tranches in a row without orders after which a product is dropped
SAMPLE_PRODUCTS = 5000  # products with a history the transition is fitted on, drawn at random
_SAMPLE_STREAM = 0x415
_JUMP_BOUNDS = (1e-4, 0.5)


class Transition(NamedTuple):
    """How last week's lines become this week's prior (the module's steps 1 to 3)."""

    shift: Tuple[float, float]  # added to each carried line: hours, hours per order
    scale: Tuple[float, float]  # each carried line's intercept and slope multiplied by
    keep: float  # share of a line's information kept each week
    jump: float  # chance that a product's line is new this week

    def section(self) -> Dict[str, Any]:
        return {"shift": list(self.shift), "scale": list(self.scale), "keep": self.keep,
                "jump": self.jump}


START = Transition((0.0, 0.0), (1.0, 1.0), 0.95, 0.02)  # where the first fit starts


class ProductHistory(NamedTuple):
    """Each product's line as the weeks so far left it, in orders placed."""

    codes: ProductCodes
    mean: np.ndarray  # (products, 2): intercept hours, hours per order
    cov: np.ndarray  # (products, 3): var(intercept), cov(intercept, slope), var(slope)
    weeks_unseen: np.ndarray  # tranches in a row without its orders (0: in the last one)
    weeks_seen: np.ndarray  # tranches with its orders, since the history began


class History(NamedTuple):
    """The state a week's run starts from: every product's history and the last transition."""

    products: ProductHistory
    tranche_key: str  # the newest tranche it learned
    weeks: int  # weekly tranches that informed it
    transition: Transition


def to_orders(mean: np.ndarray, cov: np.ndarray, centre: float, scale: float
              ) -> Tuple[np.ndarray, np.ndarray]:
    """Lines (products, 2) and packed covariances (products, 3) from standardised orders
    u = (x - centre) / scale to orders placed x."""
    return _linear(mean, cov, np.array([[1.0, -centre / scale], [0.0, 1.0 / scale]]))


def to_standard(mean: np.ndarray, cov: np.ndarray, centre: float, scale: float
                ) -> Tuple[np.ndarray, np.ndarray]:
    """The inverse of to_orders: lines in orders placed to standardised orders."""
    return _linear(mean, cov, np.array([[1.0, centre], [0.0, scale]]))


def _linear(mean: np.ndarray, cov: np.ndarray, matrix: np.ndarray
            ) -> Tuple[np.ndarray, np.ndarray]:
    """Lines mapped by `matrix` (a line each row), and their packed covariances C by
    T C T', term by term: one pass over each column."""
    (a, b), (c, d) = matrix
    c00, c01, c11 = cov[:, 0], cov[:, 1], cov[:, 2]
    moved = np.stack([a * a * c00 + 2 * a * b * c01 + b * b * c11,
                      a * c * c00 + (a * d + b * c) * c01 + b * d * c11,
                      c * c * c00 + 2 * c * d * c01 + d * d * c11], -1)
    return mean @ matrix.T, moved


class Week(NamedTuple):
    """What a week's fit learned for every product: the catalogue prior in its standardised
    orders u = (x - centre) / scale, and the weeks since the history's newest tranche."""

    catalogue: Prior
    centre: float
    scale: float
    weeks: int  # weeks since the history's newest tranche


def carried_prior(week: Week, lines: np.ndarray, cov: np.ndarray, transition: Transition
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """Return the mapped and forgotten prior of lines (products, 2) with packed covariances
    (products, 3) in orders placed, in standardised orders: means (2, products) and
    covariances (2, 2, products), a chunk of products at a time."""
    if len(lines) > CHUNK_PRODUCTS:
        parts = [carried_prior(week, lines[at:at + CHUNK_PRODUCTS],
                               cov[at:at + CHUNK_PRODUCTS], transition)
                 for at in range(0, len(lines), CHUNK_PRODUCTS)]
        return (np.concatenate([p[0] for p in parts], -1),
                np.concatenate([p[1] for p in parts], -1))
    scale = np.asarray(transition.scale)
    mean = np.asarray(transition.shift) + scale * lines
    cov = cov * np.array([scale[0] ** 2, scale[0] * scale[1], scale[1] ** 2])
    mean_u, cov_u = to_standard(mean, cov, week.centre, week.scale)
    return _forget(mean_u.T, stacked(cov_u), week.catalogue, transition.keep ** week.weeks)


def _forget(mean: np.ndarray, cov: np.ndarray, catalogue: Prior, kept: float
            ) -> Tuple[np.ndarray, np.ndarray]:
    """The geometric mixture N(mean, cov)^kept N(catalogue)^(1 - kept), in information form."""
    own = _information(cov)
    shared = _information(catalogue.cov[:, :, None])
    information = kept * own + (1.0 - kept) * shared
    forgotten, _ = inverse_2x2(information)
    weighted = (kept * np.einsum("ij...,j...->i...", own, mean)
                + (1.0 - kept) * np.einsum("ij...,j->i...", shared, catalogue.mean))
    return np.einsum("ij...,j...->i...", forgotten, weighted), forgotten


def _information(cov: np.ndarray) -> np.ndarray:
    """Stacked covariances' inverses, each conditioned to at most 1e9: the catalogue's, and
    so every product's, is nearly singular when the products' base hours are all alike
    (in standardised orders, intercept and slope then move together), and the inverse of a
    nearly singular matrix is mostly rounding."""
    ridge = 1e-9 * (cov[0, 0] + cov[1, 1])
    information, _ = inverse_2x2(cov + ridge * np.eye(2)[:, :, None])
    return information


def _mixture(week: Week, sums: Sums, carried: Tuple[np.ndarray, np.ndarray], jump: float
             ) -> Tuple[np.ndarray, Posterior, Posterior, np.ndarray]:
    """Each product's chance that its line jumped, given its rows, and both hypotheses'
    posteriors; and each product's log likelihood of its rows under the mixture."""
    v = week.catalogue.noise_var
    kept, kept_post = marginals(sums, carried[0], carried[1], v)
    new, new_post = marginals(sums, week.catalogue.mean, week.catalogue.cov, v)
    both = np.logaddexp(np.log1p(-jump) + kept, np.log(jump) + new)
    return np.exp(np.log(jump) + new - both), kept_post, new_post, both


def fit_transition(week: Week, rows: Sums, lines: np.ndarray, cov: np.ndarray,
                   start: Transition) -> Transition:
    """Choose the transition that makes this week's rows (`rows`, a product each, aligned
    with their history's `lines` and `cov`) most likely, over at most SAMPLE_PRODUCTS
    products drawn at random: shift, scale and keep by L-BFGS, the jump chance for each by
    its closed-form EM update."""
    count = len(rows.n)
    pick = np.arange(count)
    if count > SAMPLE_PRODUCTS:
        rng = np.random.default_rng(_SAMPLE_STREAM)
        pick = np.sort(rng.choice(count, SAMPLE_PRODUCTS, replace=False))
    sums = sums_of(rows, pick)
    lines, cov = lines[pick], cov[pick]
    new, _ = marginals(sums, week.catalogue.mean, week.catalogue.cov, week.catalogue.noise_var)
    jump = [start.jump]

    def transition(params: np.ndarray) -> Transition:
        return Transition((float(params[0]), float(params[1])),
                          (float(np.exp(params[2])), float(np.exp(params[3]))),
                          float(special.expit(params[4])), jump[0])

    def objective(params: np.ndarray) -> float:
        kept, _ = marginals(sums, *carried_prior(week, lines, cov, transition(params)),
                            week.catalogue.noise_var)
        jump[0] = _best_jump(kept, new, jump[0])
        mixed = np.logaddexp(np.log1p(-jump[0]) + kept, np.log(jump[0]) + new)
        return float(-mixed.mean())

    first = np.array([*start.shift, *np.log(start.scale), special.logit(start.keep)])
    bounds = [(-10.0, 10.0), (-1.0, 1.0), (-2.0, 2.0), (-2.0, 2.0), (-12.0, 12.0)]
    found = optimize.minimize(objective, first, method="L-BFGS-B", bounds=bounds,
                              options={"ftol": 1e-10})
    objective(found.x)  # the jump chance of the parameters found
    return transition(found.x)


def _best_jump(kept: np.ndarray, new: np.ndarray, start: float) -> float:
    """The jump chance that maximises the mixture's likelihood, by EM from `start`."""
    odds = new - kept
    jump = start
    for _ in range(100):
        chance = float(special.expit(special.logit(jump) + odds).mean())
        chance = min(max(chance, _JUMP_BOUNDS[0]), _JUMP_BOUNDS[1])
        if abs(chance - jump) < 1e-7:
            return chance
        jump = chance
    return jump


def learn(week: Week, rows: Sums, lines: np.ndarray, cov: np.ndarray, transition: Transition
          ) -> Tuple[Posterior, np.ndarray]:
    """Return the posterior lines of products with a history (`rows` aligned with their
    history's `lines` and `cov`), in standardised orders (the two hypotheses' mixture,
    matched by one normal), and each one's chance of a jump; a chunk at a time."""
    if len(rows.n) > CHUNK_PRODUCTS:
        parts = [learn(week, sums_of(rows, slice(at, at + CHUNK_PRODUCTS)),
                       lines[at:at + CHUNK_PRODUCTS], cov[at:at + CHUNK_PRODUCTS], transition)
                 for at in range(0, len(rows.n), CHUNK_PRODUCTS)]
        return (Posterior(np.concatenate([p[0].mean for p in parts]),
                          np.concatenate([p[0].cov for p in parts])),
                np.concatenate([p[1] for p in parts]))
    carried = carried_prior(week, lines, cov, transition)
    jumped, kept, new, _ = _mixture(week, rows, carried, transition.jump)
    weights = (1.0 - jumped)[:, None]
    mean = weights * kept.mean + (1.0 - weights) * new.mean
    cov = np.zeros_like(kept.cov)
    for post, weight in ((kept, weights), (new, 1.0 - weights)):
        gap = post.mean - mean
        spread = np.stack([gap[:, 0] ** 2, gap[:, 0] * gap[:, 1], gap[:, 1] ** 2], -1)
        cov += weight * (post.cov + spread)
    return Posterior(mean, cov), jumped


def carried(week: Week, lines: np.ndarray, cov: np.ndarray, transition: Transition
            ) -> Tuple[np.ndarray, np.ndarray]:
    """Return lines (products, 2) with packed covariances (products, 3) in orders placed as
    this week's prior leaves them, before their products' rows: the same, a week on."""
    mean, stacked_cov = carried_prior(week, lines, cov, transition)
    return to_orders(mean.T, packed(stacked_cov), week.centre, week.scale)


def advance(seen: ProductHistory, before: ProductHistory, seen_at: np.ndarray,
            max_unseen: int = MAX_UNSEEN_WEEKS) -> ProductHistory:
    """Return the products' history after this week: those seen (`seen`, their positions in
    `before` in `seen_at`, -1 for new ones), then those of `before` (carried to this week)
    unseen this week, one tranche older, unless unseen for more than `max_unseen`."""
    weeks_seen = seen.weeks_seen.astype(np.int64)
    weeks_seen[seen_at >= 0] += before.weeks_seen[seen_at[seen_at >= 0]]
    missing = np.ones(len(before.codes), dtype=bool)
    missing[seen_at[seen_at >= 0]] = False
    weeks_unseen = before.weeks_unseen.astype(np.int64) + 1
    kept = np.flatnonzero(missing & (weeks_unseen <= max_unseen))
    unseen = subset(before, kept)
    return ProductHistory(
        seen.codes.concat(unseen.codes), np.concatenate([seen.mean, unseen.mean]),
        np.concatenate([seen.cov, unseen.cov]),
        np.concatenate([seen.weeks_unseen, weeks_unseen[kept]]).astype(np.int16),
        np.concatenate([weeks_seen, unseen.weeks_seen]).astype(np.int16),
    )


def from_lines(codes: ProductCodes, lines: np.ndarray, cov: np.ndarray,
               weeks_unseen: np.ndarray) -> ProductHistory:
    """A history that starts from lines (a model's, or this week's fit) and their packed
    covariances, all in orders placed: each product as seen once."""
    return ProductHistory(codes, lines, cov, np.asarray(weeks_unseen, dtype=np.int16),
                          np.ones(len(codes), dtype=np.int16))


def subset(history: ProductHistory, positions: np.ndarray) -> ProductHistory:
    """The history of the products at these positions, in that order."""
    return ProductHistory(history.codes.take(positions), history.mean[positions],
                          history.cov[positions], history.weeks_unseen[positions],
                          history.weeks_seen[positions])


def empty() -> ProductHistory:
    return ProductHistory(ProductCodes.from_strings(()), np.zeros((0, 2)), np.zeros((0, 3)),
                          np.zeros(0, np.int16), np.zeros(0, np.int16))
