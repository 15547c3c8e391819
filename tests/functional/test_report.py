"""The review report renders in a real browser: headline, plots (the promises' calibration
among them) and tables a reviewer sees."""
import base64
import io
import re
from datetime import datetime
from pathlib import Path

from matplotlib.image import imread

from pipeline import train_model
from pipeline.generate_dataset import generate_tranche
from pipeline.modelling.promise_check import REPORT_PROBABILITIES
from pipeline.registry.published import report_key
from pipeline.registry.store import LocalStore
from pipeline.training.report import CALIBRATION_TITLE, QUINTILE_TITLE
from tests.chromium import run_chromium
from tests.conftest import put_tranche


def test_the_second_weeks_report_renders_its_numbers_plots_and_tables_in_chromium(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "store")
    put_tranche(store, generate_tranche(3000, 40, seed=1, zipf=1.1).data, datetime(2021, 7, 9))
    first = train_model.main(store)
    busier = generate_tranche(3000, 40, seed=2, zipf=1.1, queue_factor=1.8).data
    put_tranche(store, busier, datetime(2021, 7, 16))
    second = train_model.main(store)
    page = tmp_path / "report.html"
    page.write_bytes(store.get_bytes(report_key(second)))

    dom = run_chromium(["--dump-dom", page.as_uri()], tmp_path / "profile-dom")
    assert f"Model review: {second}" in dom
    headline = re.search(r'<table id="headline">(.*?)</table>', dom, re.S)
    assert headline and first in headline.group(1)  # the live model, beside this one
    assert len(re.findall(r"<tr>", re.search(
        r'<table id="history">(.*?)</table>', dom, re.S).group(1))) == 3  # type: ignore[union-attr]  # noqa: E501
    assert "orders_placed" in re.search(
        r'<table id="drift">(.*?)</table>', dom, re.S).group(1)  # type: ignore[union-attr]
    assert dom.count("<img ") == 5
    # The promises' calibration, this model's beside the live one's, as figures that decode.
    images = dict(re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', dom))
    for title in (CALIBRATION_TITLE, QUINTILE_TITLE):
        drawn = imread(io.BytesIO(base64.b64decode(images[title])), format="png")
        assert drawn.shape[0] > 300 and drawn.shape[1] > 400 and drawn.std() > 0.05, title
    calibration = re.search(r'<table id="calibration">(.*?)</table>', dom, re.S)
    assert calibration and f"this model {second}" in calibration.group(1)
    assert f"live model {first}" in calibration.group(1)
    assert len(re.findall(r"<tr>", calibration.group(1))) == 1 + len(REPORT_PROBABILITIES)
    quintiles = re.search(r'<table id="calibration-by-quintile">(.*?)</table>', dom, re.S)
    assert quintiles and len(re.findall(r"<tr>", quintiles.group(1))) == 1 + 5
    assert "within promise at 0.9" in headline.group(1)

    shot = tmp_path / "report.png"
    run_chromium(["--window-size=1200,3600", f"--screenshot={shot}", page.as_uri()],
                 tmp_path / "profile-shot")
    pixels = imread(str(shot))[:, :, :3]
    # Matplotlib's first colour (31, 119, 180), blended by the points' transparency: only
    # the plots have pixels much bluer than red, so they were decoded and drawn.
    plotted = (pixels[:, :, 2] - pixels[:, :, 0]) > 0.15
    assert plotted.sum() > 3000
    assert pixels.std() > 0.05  # a page, not a blank
