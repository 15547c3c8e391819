"""What made a model: the code, its libraries, the settings, and whether this run is a re-run.

A re-run of the same tranche by the same code and settings publishes nothing: its fingerprint
is the newest model's.
"""
import hashlib
import platform
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional

import joblib
import numpy as np
import pandas as pd
import scipy
import sklearn

from pipeline.registry.published import (
    ModelVerificationError,
    published_versions,
    read_metadata,
    sha256,
)
from pipeline.registry.store import Store

PACKAGE = Path(__file__).resolve().parent.parent


def git_commit() -> Optional[str]:
    """Return the commit the code was run from, when it is known."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PACKAGE, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def library_versions() -> Dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "joblib": joblib.__version__,
        "scikit-learn": sklearn.__version__,
        "scipy": scipy.__version__,
    }


def code_fingerprint() -> str:
    """Return the SHA-256 of the pipeline's own source (every module): which code trained."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_fingerprint(tranche_sha256: str, *settings: Any) -> str:
    """Return what makes a training run: its tranche, the code, and every setting."""
    described = repr([s.get_params() if hasattr(s, "get_params") else s for s in settings])
    return sha256(f"{tranche_sha256}\0{code_fingerprint()}\0{described}".encode())


def already_published(store: Store, run: str) -> Optional[str]:
    """Return the newest model's version if this same run published it (a re-run is a no-op)."""
    versions = published_versions(store)
    if not versions:
        return None
    try:
        newest = read_metadata(store, versions[0])
    except ModelVerificationError:
        return None
    return versions[0] if newest.extra("run_fingerprint") == run else None
