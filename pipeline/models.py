"""List the published models in a store, newest first, or show one model's metadata.

Steps:
1. List the models that have metadata (are published), newest first, up to --last.
2. Verify each as serving would (SHA-256, signature with TTD_SIGNING_KEY, parameters).
3. Print a table: version, trained at, tranche, rows, products, held-out R² and MAE, the
   share of held-out orders within their promise at 0.9 ("-": trained before promises), the
   live model's MAE on that week (from the champion comparison), signed, verifies.

Run: python -m pipeline.models [STORE] [--last 20] [--show VERSION]
"""
import json
from typing import Any, List, NamedTuple, Optional

from pipeline.cli import (
    add_store_argument,
    build_parser,
    exit_on_failure,
    number_in,
    stage_settings,
)
from pipeline.logs import configure_logger
from pipeline.artifact.promise import CHECKED_PROBABILITY
from pipeline.registry.published import (
    ModelVerificationError,
    load_model,
    published_versions,
    read_metadata,
)
from pipeline.registry.store import Store, open_store

log = configure_logger(__name__)


class ModelRow(NamedTuple):
    version: str
    trained_at: str
    tranche: str
    rows: Optional[int]
    products: Optional[int]
    weeks: Optional[int]  # weekly tranches that inform it (None: before history)
    r2: Optional[float]
    mae: Optional[float]
    promise_coverage: Optional[float]  # held-out orders within their promise at 0.9
    live_mae: Optional[float]  # last week's model on this model's week
    signed: Optional[bool]
    verifies: bool
    problem: str


def model_rows(store: Store, signing_key: Optional[bytes], last: int = 20) -> List[ModelRow]:
    """Return what an operator needs to know of each of the newest published models."""
    rows = []
    for version in published_versions(store)[:last]:
        problem = ""
        try:
            metadata = load_model(store, version, signing_key).metadata
        except ModelVerificationError as exc:
            problem = str(exc)
            try:
                metadata = read_metadata(store, version)
            except ModelVerificationError:
                rows.append(ModelRow(version, "?", "?", None, None, None, None, None, None,
                                     None, None, False, problem))
                continue
        comparison = metadata.comparison_section()
        dataset = metadata.dataset_section()
        rows.append(
            ModelRow(
                version=version,
                trained_at=metadata.created_at[:19].replace("T", " "),
                tranche=(dataset.key or "?").rsplit("/", 1)[-1],
                rows=dataset.rows_used,
                products=metadata.products(),
                weeks=metadata.history_section().weeks,
                r2=metadata.metrics.get("r2"),
                mae=metadata.metrics.get("mae"),
                promise_coverage=metadata.metrics.get("promise_coverage"),
                live_mae=comparison.live_mae if comparison else None,
                signed=bool(metadata.signature),
                verifies=not problem,
                problem=problem,
            )
        )
    return rows


def _cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _share(value: Optional[float]) -> str:
    return "-" if value is None or value != value else f"{value:.1%}"


def format_table(rows: List[ModelRow]) -> str:
    """Return the rows as a fixed-width table, newest first, with problems listed below."""
    header = ["version", "trained at (UTC)", "tranche", "rows", "products", "weeks", "R²", "MAE",
              f"within {CHECKED_PROBABILITY:g}", "live MAE", "signed", "verifies"]
    cells = [
        [r.version, r.trained_at, r.tranche, _cell(r.rows), _cell(r.products), _cell(r.weeks),
         _cell(r.r2),
         _cell(r.mae), _share(r.promise_coverage), _cell(r.live_mae), _cell(r.signed),
         _cell(r.verifies)]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines += [f"{r.version}: does not verify: {r.problem}" for r in rows if r.problem]
    return "\n".join(lines)


def main(store: Store, signing_key: Optional[bytes] = None, last: int = 20,
         show: Optional[str] = None) -> str:
    """Return the table of published models, or one model's metadata as JSON."""
    if show:
        if show not in published_versions(store):
            newest = ", ".join(published_versions(store)[:5]) or "none"
            raise ModelVerificationError(
                f"model version {show!r} is not published in {store.uri}; newest: {newest}"
            )
        return json.dumps(read_metadata(store, show).model_dump(mode="json"), indent=2)
    rows = model_rows(store, signing_key, last)
    if not rows:
        return f"no published model in {store.uri}"
    return format_table(rows)


if __name__ == "__main__":
    parser = build_parser(__doc__.split("\n")[0])
    settings = stage_settings(log)
    add_store_argument(parser, settings)
    parser.add_argument(
        "--last", type=number_in(1, 10**6, "a count", int), default=20, help="models listed"
    )
    parser.add_argument("--show", metavar="VERSION", help="print this model's metadata")
    args = parser.parse_args()
    with exit_on_failure(log, settings):
        print(main(open_store(args.store), settings.signing_key_bytes(), args.last, args.show))
