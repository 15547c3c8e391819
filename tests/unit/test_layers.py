"""The layout's rules (docs/development.md): imports only go down, and the service loads a
model without training's libraries."""
import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

PIPELINE = Path(__file__).resolve().parents[2] / "pipeline"
# Top to bottom; a module may import its own layer and those below it.
LAYERS = [
    "stages", "training", "service", "registry", "modelling", "data", "artifact", "codes", "shared",
]
SHARED = {"settings", "logs", "cli"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 2:
        return parts[1]
    return "shared" if parts[-1] in SHARED else "stages"


def pipeline_imports(path: Path) -> List[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            names = [node.module] if node.module != "pipeline" else [
                f"pipeline.{alias.name}" for alias in node.names
            ]
            found += names
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("pipeline.")]
    return found


def test_imports_only_go_down_the_layers() -> None:
    upward: List[Tuple[str, str]] = []
    rank: Dict[str, int] = {name: i for i, name in enumerate(LAYERS)}
    for path in sorted(PIPELINE.rglob("*.py")):
        module = ".".join(("pipeline",) + path.relative_to(PIPELINE).with_suffix("").parts)
        for imported in pipeline_imports(path):
            if imported.count(".") < 2 and imported.split(".")[-1] in rank:  # a package
                imported += ".__init__"
            if rank[layer_of(imported)] < rank[layer_of(module)]:
                upward.append((module, imported))
    assert upward == []


def test_the_service_loads_a_model_without_training_code_or_its_libraries() -> None:
    code = (
        "import sys, pipeline.serve_model, pipeline.registry.published; "
        "print(sorted(m for m in ('sklearn', 'scipy', 'matplotlib', 'pandas', 'pandera', "
        "'pyarrow', 'pipeline.modelling', 'pipeline.training') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
