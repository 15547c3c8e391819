"""The data scientist's notebook runs top to bottom against a generated local store."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from pipeline import generate_dataset
from pipeline.store import LocalStore
from tests.processes import REPO

NOTEBOOK = REPO / "notebooks" / "time_to_dispatch_exploration.ipynb"


def test_notebook_runs_top_to_bottom_and_its_findings_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_dataset.main(LocalStore(tmp_path / "store"), rows=3000, skus=8, seed=3)
    monkeypatch.setenv("TTD_STORE", str(tmp_path / "store"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    NotebookClient(
        notebook, timeout=300, resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    last = notebook.cells[-1].outputs
    assert any("findings hold" in output.get("text", "") for output in last)
    assert len(notebook.cells) > 5
