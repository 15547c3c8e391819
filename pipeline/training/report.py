"""The review report: one self-contained HTML page a person reads before approving a model.

Headline numbers first (this model against the live one), then the plots (predicted against
actual, residuals against orders placed, the metric history, the promises' calibration), then
the tables (the promises' coverage, the products with the largest errors, drift). Figures
are PNGs embedded as data URIs, drawn by matplotlib on Figure objects of their own (no
pyplot, so no global backend is switched for whoever imports this, a notebook included), so
the page needs no server, network or script.
"""
import base64
import html
import io
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.artifact.promise import CHECKED_PROBABILITY
from pipeline.modelling.evaluation import Comparison
from pipeline.modelling.popularity import Band
from pipeline.modelling.promise_check import Calibration
from pipeline.data.tranche import HOURS, ORDERS, PRODUCT
from pipeline.codes.numbering import factorize_products

MAX_POINTS = 5000  # points drawn per scatter: enough to see the shape, small enough to embed
WORST_PRODUCTS = 10


class HistoryPoint(NamedTuple):
    version: str
    created_at: str
    r2: Optional[float]
    mae: Optional[float]
    live_mae: Optional[float]


class ReportInputs(NamedTuple):
    version: str
    created_at: str
    tranche: str
    metrics: Dict[str, Any]
    comparison: Optional[Comparison]
    forced: bool
    held_out: pd.DataFrame  # product_code, orders_placed, hours_to_dispatch, estimate
    drift: List[Dict[str, Any]]
    history: List[HistoryPoint]  # oldest first, this model last
    warnings: List[str]
    calibrations: Sequence[Calibration] = ()  # this model's, then the live one's if it has any
    popularity: Sequence[Band] = ()  # by the products' rows this week
    weeks: Optional[int] = None  # weekly tranches that inform the model


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    # Laid out as it is drawn: bbox_inches="tight" would draw every figure twice.
    figure.savefig(buffer, format="png", dpi=90)  # Agg, whatever pyplot's
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(data: str, alt: str) -> str:
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">' \
           f"<figcaption>{html.escape(alt)}</figcaption></figure>"


def _sample(frame: pd.DataFrame) -> pd.DataFrame:
    return frame if len(frame) <= MAX_POINTS else frame.sample(MAX_POINTS, random_state=0)


def predicted_vs_actual(held_out: pd.DataFrame) -> str:
    shown = _sample(held_out)
    figure = Figure(figsize=(5.5, 4.5), layout="tight")
    ax = figure.subplots()
    ax.scatter(shown["estimate"], shown[HOURS], s=5, alpha=0.4)
    top = float(max(shown["estimate"].max(), shown[HOURS].max(), 1.0))
    ax.plot([0, top], [0, top], color="black", linewidth=1)
    ax.set_xlabel("estimated hours")
    ax.set_ylabel("actual hours")
    ax.set_title("Held-out rows: estimate against actual")
    return _png(figure)


def residuals_vs_orders(held_out: pd.DataFrame) -> str:
    shown = _sample(held_out)
    figure = Figure(figsize=(5.5, 4.5), layout="tight")
    ax = figure.subplots()
    ax.scatter(shown[ORDERS], shown[HOURS] - shown["estimate"], s=5, alpha=0.4)
    ax.axhline(0, color="black", linewidth=1)
    ax.set_xlabel(ORDERS)
    ax.set_ylabel("actual - estimate, hours")
    ax.set_title("Residuals against orders placed")
    return _png(figure)


def metric_history(history: List[HistoryPoint]) -> str:
    figure = Figure(figsize=(7, 3.5), layout="tight")
    ax = figure.subplots()
    x = np.arange(len(history))
    for name, values in (
        ("held-out MAE", [h.mae for h in history]),
        ("live model's MAE on that week", [h.live_mae for h in history]),
    ):
        y = np.array([np.nan if v is None else v for v in values], dtype=float)
        ax.plot(x, y, marker="o", label=name)
    ax.set_xticks(x)
    ax.set_xticklabels([h.created_at[:10] for h in history], rotation=30, ha="right")
    ax.set_ylabel("MAE, hours")
    ax.set_title("The last published models")
    ax.legend()
    return _png(figure)


CALIBRATION_TITLE = "Promises: share of held-out orders within, against the probability asked"
QUINTILE_TITLE = (f"Promises at {CHECKED_PROBABILITY:g}: share of held-out orders within, "
                  "by quintile of orders placed")


def promise_calibration(calibrations: Sequence[Calibration]) -> str:
    """Coverage against probability: on the diagonal, a promise holds as often as it says."""
    figure = Figure(figsize=(5.5, 4.5), layout="tight")
    ax = figure.subplots()
    grid = np.linspace(0.5, 0.99, 50)
    ax.plot(grid, grid, color="black", linewidth=1, label="as promised")
    rows = calibrations[0].rows if calibrations else 0
    if rows:  # what sampling alone moves a share over this model's rows by (2 sd)
        band = 2 * np.sqrt(grid * (1 - grid) / rows)
        ax.fill_between(grid, grid - band, grid + band, color="grey", alpha=0.2,
                        label=f"±2 sd over {rows} rows")
    for c in calibrations:
        ax.plot(c.probabilities, c.coverage, marker="o", label=f"{c.model} ({c.rows} rows)")
    ax.set_xlabel("promise_probability")
    ax.set_ylabel("share within the promise")
    ax.set_title("Promise calibration")
    ax.legend()
    return _png(figure)


def coverage_by_quintile(calibrations: Sequence[Calibration]) -> str:
    """Coverage at the checked probability per queue quintile: busy queues must hold too."""
    figure = Figure(figsize=(5.5, 4.5), layout="tight")
    ax = figure.subplots()
    labels = calibrations[0].quintiles if calibrations else []
    x = np.arange(len(labels))
    width = 0.8 / max(len(calibrations), 1)
    for i, c in enumerate(calibrations):
        ax.bar(x + (i - (len(calibrations) - 1) / 2) * width, c.by_quintile, width,
               label=c.model)
    ax.axhline(CHECKED_PROBABILITY, color="black", linewidth=1)
    ax.set_xticks(x)
    ax.set_xticklabels(labels)
    ax.set_ylim(min([0.5] + [v for c in calibrations for v in c.by_quintile if v == v]), 1.0)
    ax.set_xlabel(f"{ORDERS} (quintiles of the held-out rows)")
    ax.set_ylabel(f"share within the {CHECKED_PROBABILITY:g} promise")
    ax.set_title(f"Promises at {CHECKED_PROBABILITY:g} by queue length")
    ax.legend()
    return _png(figure)


def calibration_rows(calibrations: Sequence[Calibration]) -> List[List[Any]]:
    """Rows of the calibration table: one per probability, a coverage column per model."""
    if not calibrations:
        return []
    return [[p] + [c.coverage[i] for c in calibrations]
            for i, p in enumerate(calibrations[0].probabilities)]


def worst_products(held_out: pd.DataFrame, most: int = WORST_PRODUCTS) -> pd.DataFrame:
    """Return the products with the largest mean absolute error on the held-out rows (summed
    with bincounts over the products' numbers; ties keep the products' order)."""
    codes, products = factorize_products(held_out[PRODUCT])  # the products with rows
    hours = held_out[HOURS].to_numpy(dtype=float)
    error = np.abs(hours - held_out["estimate"].to_numpy(dtype=float))
    k = len(products)
    rows = np.bincount(codes, minlength=k)
    mae = np.bincount(codes, error, k) / rows
    worst = np.argsort(-mae, kind="stable")[:most]
    return pd.DataFrame({
        PRODUCT: products.take(worst).tolist(),
        "rows": rows[worst],
        "mae": mae[worst],
        "mean_hours": np.bincount(codes, hours, k)[worst] / rows[worst],
    })


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return "-"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 100:
        return f"{value:.0f}"  # a count stored among the float metrics
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _table(rows: List[List[Any]], header: List[str], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{_number(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _headline(inputs: ReportInputs) -> str:
    """This model's scores, and both models' on the rows they share."""
    c = inputs.comparison or Comparison("none")
    shared = c.rows if inputs.comparison else None
    return _table(
        [
            ["this model", inputs.version, inputs.metrics.get("mae"), inputs.metrics.get("r2"),
             inputs.metrics.get("promise_coverage"), inputs.metrics.get("test_rows")],
            ["live model, same rows", c.live_version, c.live_mae, c.live_r2,
             c.live_promise_coverage, shared],
            ["this model, same rows", inputs.version, c.new_mae, c.new_r2,
             c.new_promise_coverage, shared],
        ],
        ["", "version", "MAE (h)", "R²", f"within promise at {CHECKED_PROBABILITY:g}",
         "held-out rows"],
        "headline",
    )


def _promises(calibrations: Sequence[Calibration]) -> str:
    """The promises' plots and tables, or nothing for a model without promises."""
    if not calibrations:
        return ""
    return (
        _img(promise_calibration(calibrations), CALIBRATION_TITLE) + "\n"
        + _img(coverage_by_quintile(calibrations), QUINTILE_TITLE) + "\n"
        + "<h2>Promises: share of held-out orders within, each half under the other half's "
        "calibration; the live model's as published</h2>\n"
        + _table(calibration_rows(calibrations),
                 ["promise_probability"] + [f"{c.model} {c.version}" for c in calibrations],
                 "calibration")
        + _table([[q] + [c.by_quintile[i] for c in calibrations]
                  for i, q in enumerate(calibrations[0].quintiles)],
                 [f"{ORDERS} (quintile)"] + [f"{c.model} at {CHECKED_PROBABILITY:g}"
                                             for c in calibrations],
                 "calibration-by-quintile")
    )


def _popularity(bands: Sequence[Band], weeks: Optional[int]) -> str:
    """Error and promise width by the products' rows this week, beside this week alone."""
    if not bands:
        return ""
    informed = f"{weeks} weekly tranche(s)" if weeks else "this week's tranche"
    rows = [[b.band, b.products, b.held_out_rows, b.mae, b.mae_alone, b.width, b.width_alone]
            for b in bands]
    return (f"<h2>By popularity: this model (learned from {informed}) and this week's rows "
            "alone, over at most 5,000 products drawn at random</h2>\n"
            + _table(rows, ["training rows this week", "products", "held-out rows",
                            "MAE (h)", "MAE, this week alone", f"promise width at "
                            f"{CHECKED_PROBABILITY:g} (h)", "width, this week alone"],
                     "popularity"))


def _drift(drift: List[Dict[str, Any]]) -> str:
    rows = [
        [d.get("statistic"), d.get("product") or "all", d.get("psi"), d.get("median_before"),
         d.get("median_after")]
        for d in sorted(drift, key=lambda d: -float(d.get("psi", 0.0)))
    ]
    if not rows:
        return "<p>No live model to compare with.</p>"
    return _table(rows, ["statistic", "product", "PSI", "median before", "median after"], "drift")


STYLE = """body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }
th { background: #eef; }
figure { display: inline-block; margin: 0 1em 1em 0; }"""


def render(inputs: ReportInputs) -> str:
    """Return the report as one HTML document."""
    worst = worst_products(inputs.held_out)
    history_rows = [[h.version, h.created_at[:19], h.mae, h.r2, h.live_mae]
                    for h in reversed(inputs.history)]
    verdict = "published with --force, though worse than the live model" if inputs.forced \
        else "published: passed every check"
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in inputs.warnings) or "<li>none</li>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Model review {html.escape(inputs.version)}</title>
<style>
{STYLE}
</style></head>
<body>
<h1>Model review: {html.escape(inputs.version)}</h1>
<p id="summary">Trained {html.escape(inputs.created_at[:19])} UTC on
<code>{html.escape(inputs.tranche)}</code>; {verdict}.</p>
<h2>This model against the live one</h2>
{_headline(inputs)}
<h2>Plots</h2>
{_img(predicted_vs_actual(inputs.held_out), "Held-out rows: estimate against actual")}
{_img(residuals_vs_orders(inputs.held_out), "Residuals against orders placed")}
{_img(metric_history(inputs.history), "Metric history of the last published models")}
{_promises(inputs.calibrations)}
{_popularity(inputs.popularity, inputs.weeks)}
<h2>Products with the largest errors</h2>
{_table(worst.values.tolist(), ["product", "held-out rows", "MAE (h)", "mean hours"],
        "worst-products")}
<h2>Drift against the live model's training data (PSI over 0.25 is worth a look)</h2>
{_drift(inputs.drift)}
<h2>Metric history</h2>
{_table(history_rows, ["version", "trained at", "MAE (h)", "R²", "live model's MAE"],
        "history")}
<h2>Warnings about the tranche</h2>
<ul id="warnings">{warnings}</ul>
</body></html>
"""
