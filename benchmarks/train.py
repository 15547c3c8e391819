"""How long does a weekly run take, beside reading the same file with pandas alone?

Run: python benchmarks/train.py [--rows 100000 1000000 10000000] [--baseline-code DIR]
Generates a real-shaped tranche (Zipf(1.1) over 10,000 products) of each size into a scratch
store, then, alternating, times `python -m pipeline.train_model` on it as a whole process and
a process that only does `pandas.read_csv` of the same file, and prints the median wall
time, the peak memory (max RSS) of each, and their ratios. With --baseline-code (another
checkout of this repo, e.g. `git worktree add /tmp/old <commit>`), that code's train_model
is timed too, in the same alternation, so a change can be checked for a regression. It is
run without --force, which code before 492d195 lacks; since our runs publish in between, its
re-run check never finds a model of its own, so it too trains and publishes in full.
"""
import argparse
import statistics
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.generate_dataset import generate_tranche, to_csv_bytes  # noqa: E402
from pipeline.registry.store import LocalStore  # noqa: E402
from pipeline.data.tranche import tranche_key  # noqa: E402
from tests.processes import measure  # noqa: E402

SKUS = 10_000


def main(sizes: List[int], repeats: int, baseline: Optional[Path]) -> None:
    print(f"{'rows':>11} {'what':>16} {'median s':>9} {'peak MiB':>9} {'s ratio':>8} "
          f"{'MiB ratio':>9}  exit codes")
    for rows in sizes:
        with tempfile.TemporaryDirectory() as scratch:
            store = LocalStore(Path(scratch) / "store")
            tranche = generate_tranche(rows, SKUS, seed=1, zipf=1.1).data
            key = tranche_key(datetime(2021, 7, 9, 23))
            store.put_new(key, to_csv_bytes(tranche))
            del tranche
            csv = store.location(key)
            read = f"import pandas; pandas.read_csv({csv!r})"
            # --force: each run trains and publishes in full (a re-run would be a no-op).
            train = [sys.executable, "-m", "pipeline.train_model", store.uri, "--force"]
            runners: Dict[str, Tuple[Path, List[str]]] = {
                "read_csv": (REPO, [sys.executable, "-c", read]),
                "train_model": (REPO, train),
            }
            if baseline is not None:
                runners["baseline train"] = (
                    baseline, [sys.executable, "-m", "pipeline.train_model", store.uri]
                )
            results: Dict[str, List[Tuple[float, float, int]]] = {name: [] for name in runners}
            for _ in range(repeats):
                for name, (cwd, command) in runners.items():  # alternating, A B A B
                    results[name].append(measure(command, cwd))
            floor_s = statistics.median(r[0] for r in results["read_csv"])
            floor_m = statistics.median(r[1] for r in results["read_csv"])
            for name, runs in results.items():
                seconds = statistics.median(r[0] for r in runs)
                peak = statistics.median(r[1] for r in runs)
                print(f"{rows:>11,} {name:>16} {seconds:>9.2f} {peak:>9.0f} "
                      f"{seconds / floor_s:>8.2f} {peak / floor_m:>9.2f}  "
                      f"{sorted({r[2] for r in runs})}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-code", type=Path, default=None)
    args = parser.parse_args()
    main(args.rows, args.repeats, args.baseline_code)
