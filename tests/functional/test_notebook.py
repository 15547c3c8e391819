"""The data scientist's notebook runs top to bottom against a generated local store."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pipeline import generate_dataset
from pipeline.registry.store import LocalStore
from tests.processes import REPO

NOTEBOOK = REPO / "notebooks" / "time_to_dispatch_exploration.ipynb"


def test_notebook_runs_top_to_bottom_on_real_shaped_data_and_its_findings_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_dataset.main(
        LocalStore(tmp_path / "store"), rows=30_000, skus=1000, seed=3, zipf=1.1,
        quirks=["spaces", "outlier"],
    )
    monkeypatch.setenv("TTD_STORE", str(tmp_path / "store"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call, unused-ignore]
    NotebookClient(
        notebook, timeout=300, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    last = notebook.cells[-1].outputs
    assert any("findings hold" in output.get("text", "") for output in last)
    assert len(notebook.cells) > 5
    images = [
        output for cell in notebook.cells if cell.cell_type == "code"
        for output in cell.outputs if "image/png" in output.get("data", {})
    ]
    assert len(images) >= 3  # its plots are shown inline, not lost to a file backend
