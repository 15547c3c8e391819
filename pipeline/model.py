"""The served model: one straight line per product, as plain numbers.

Training fits it with a scikit-learn estimator (pipeline/estimator.py), but what is saved
and served is only codes, intercepts and slopes: loading it never depends on the library
versions that trained it (version skew on unpickling is what breaks peers' services), and
the service imports neither scikit-learn nor scipy.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, Sequence, Tuple

import numpy as np

# Unchanged since the first release: the artifact is still one line per product, so models
# trained now load in older services too (a code rollback keeps serving the newest model).
ARTIFACT_FORMAT = "time-to-dispatch/per-product-linear/1"


@dataclass(frozen=True)
class ProductLinearModel:
    """Hours to dispatch = intercept[product] + slope[product] * orders placed."""

    product_codes: Tuple[str, ...]
    intercepts: Tuple[float, ...]
    slopes: Tuple[float, ...]
    _index: Dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not len(self.product_codes) == len(self.intercepts) == len(self.slopes):
            raise ValueError("product_codes, intercepts and slopes differ in length")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.product_codes)})

    def knows(self, product_code: str) -> bool:
        return product_code in self._index

    def predict_one(self, product_code: str, orders_placed: float) -> float:
        """Estimate one order's hours, never below zero. KeyError for an unknown product."""
        i = self._index[product_code]
        return max(0.0, self.intercepts[i] + self.slopes[i] * orders_placed)

    def predict(self, product_codes: Sequence[str], orders_placed: np.ndarray) -> np.ndarray:
        """Estimate many orders at once, never below zero. KeyError for an unknown product."""
        idx = np.fromiter((self._index[c] for c in product_codes), dtype=np.int64)
        intercepts = np.asarray(self.intercepts)[idx]
        slopes = np.asarray(self.slopes)[idx]
        hours: np.ndarray = np.clip(intercepts + slopes * np.asarray(orders_placed, float), 0, None)
        return hours

    def to_artifact(self) -> Dict[str, Any]:
        """Return plain Python data: loadable by any numpy/scikit-learn version, or none."""
        return {
            "format": ARTIFACT_FORMAT,
            "product_codes": list(self.product_codes),
            "intercepts": [float(v) for v in self.intercepts],
            "slopes": [float(v) for v in self.slopes],
        }

    @classmethod
    def from_artifact(cls, artifact: Any) -> "ProductLinearModel":
        """Rebuild a model from `to_artifact` data; ValueError if it is not one."""
        if not isinstance(artifact, dict) or artifact.get("format") != ARTIFACT_FORMAT:
            found = artifact.get("format") if isinstance(artifact, dict) else type(artifact)
            raise ValueError(f"artifact format is {found!r}, this code reads {ARTIFACT_FORMAT!r}")
        return cls(
            tuple(str(c) for c in artifact["product_codes"]),
            tuple(float(v) for v in artifact["intercepts"]),
            tuple(float(v) for v in artifact["slopes"]),
        )
