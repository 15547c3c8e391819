"""A published model's metadata, and typed views of its sections.

The JSON as written is what is signed: fields added since the first release stay pydantic
extras (never declared fields with defaults, which would change the canonical JSON of models
written before them), and each section is read through a model of its own whose fields are
all optional and whose unknown fields are kept. Every section reads from every release's
metadata; one that does not parse reads as empty, never as a failure to serve.
"""
from typing import Any, Dict, List, Optional, Type, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class Section(BaseModel):
    """A part of the metadata: every field optional, unknown ones kept."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class DatasetSection(Section):
    """The tranche the model learned from."""

    key: Optional[str] = None
    location: Optional[str] = None
    sha256: Optional[str] = None
    rows_in_file: Optional[int] = None
    rows_used: Optional[int] = None
    train_rows: Optional[int] = None
    test_rows: Optional[int] = None
    outliers_dropped: Optional[int] = None
    warnings: List[str] = []


class ThresholdsSection(Section):
    r2_error: Optional[float] = None
    r2_warning: Optional[float] = None
    max_mae_regression: Optional[float] = None
    forced: bool = False


class ComparisonSection(Section):
    """Last week's model and the new one, on the new week's held-out rows."""

    live_version: Optional[str] = None
    live_mae: Optional[float] = None
    live_r2: Optional[float] = None
    new_mae: Optional[float] = None
    new_r2: Optional[float] = None
    rows: int = 0
    # Since the weekly promise checks: the share of those rows within each model's promise at
    # 0.9 (live: None when it was trained before promises).
    live_promise_coverage: Optional[float] = None
    new_promise_coverage: Optional[float] = None


class CatalogueSection(Section):
    """Counts of the products answered (the codes live in the artifact since the catalogue
    change; before it, `carried` and `dropped` listed them here)."""

    products: Optional[int] = None
    fitted: Optional[int] = None
    pooled: Optional[int] = None
    carried_products: Optional[int] = None
    dropped_products: Optional[int] = None
    newly_dropped: Optional[int] = None
    max_carry_weeks: Optional[int] = None
    max_dropped_weeks: Optional[int] = None
    carried: Dict[str, int] = {}  # before the catalogue change: code -> weeks missing
    dropped: List[str] = []  # before the catalogue change


class HistorySection(Section):
    """What the weeks before taught the model (since learning from every week)."""

    mode: Optional[str] = None  # "on": learned with the history; "off": this week alone
    state_key: Optional[str] = None  # the state this run left, for the next
    state_sha256: Optional[str] = None
    started_from: Optional[str] = None  # the state this run learned from (lineage)
    began: Optional[str] = None  # how the run began: from that state, a model's lines, fresh
    weeks: Optional[int] = None  # weekly tranches that inform the model
    transition: Dict[str, Any] = {}
    products: Optional[int] = None  # products the state holds
    jumped: Optional[int] = None  # products whose line jumped this week (chance over half)


class PoolingSection(Section):
    catalogue_intercept: Optional[float] = None
    catalogue_slope: Optional[float] = None
    noise_sd: Optional[float] = None
    prior_scale: Optional[float] = None


S = TypeVar("S", bound=Section)


class ModelMetadata(BaseModel):
    """What is known about a published model; `extra` keeps fields added by later versions.

    Only the fields a model's JSON holds are written and signed (`exclude_unset`), so the
    canonical JSON is the same for the code that wrote a model and any code that reads it.
    `product_codes` lists the products in models before the catalogue change; since then
    the codes live in the artifact only, and the metadata counts them (`catalogue`).
    """

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    model_version: str
    created_at: str
    artifact_key: str
    artifact_sha256: str
    artifact_format: str
    metrics: Dict[str, float]
    dataset: Dict[str, Any]
    product_codes: Optional[List[str]] = None
    signature: Optional[str] = None

    def extra(self, name: str) -> Any:
        """Return a field added after the first release (None when the model predates it)."""
        return (self.model_extra or {}).get(name)

    def _section(self, kind: Type[S], raw: Any) -> S:
        try:
            return kind.model_validate(raw if isinstance(raw, dict) else {})
        except ValidationError:  # a description must never stop a stage
            return kind()

    def dataset_section(self) -> DatasetSection:
        return self._section(DatasetSection, self.dataset)

    def thresholds_section(self) -> ThresholdsSection:
        return self._section(ThresholdsSection, self.extra("thresholds"))

    def comparison_section(self) -> Optional[ComparisonSection]:
        """The champion comparison, or None for a model that had no live model to beat."""
        raw = self.extra("comparison")
        return self._section(ComparisonSection, raw) if raw else None

    def catalogue_section(self) -> CatalogueSection:
        return self._section(CatalogueSection, self.extra("catalogue"))

    def history_section(self) -> HistorySection:
        return self._section(HistorySection, self.extra("history"))

    def pooling_section(self) -> PoolingSection:
        return self._section(PoolingSection, self.extra("pooling"))

    def profile(self) -> Optional[Dict[str, Any]]:
        """The training data's profile (drift.profile), for drift and the metrics."""
        raw = self.extra("profile")
        return raw if isinstance(raw, dict) else None

    def products(self) -> Optional[int]:
        """How many products the model answers, from either generation of metadata."""
        if self.product_codes is not None:
            return len(self.product_codes)
        return self.catalogue_section().products
