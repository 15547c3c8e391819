"""Which change moved a run's time? Whole training runs of several checkouts in turn, one store.

Run: python benchmarks/checkouts.py STORE DIR [DIR ...] [--repeats 5]
STORE is a local store as a week found it: a tranche (`python -m pipeline.generate_dataset
STORE --rows 4000000 --skus 1000000 --zipf 0.8`), and for a second week a model trained on
it and the next tranche beside it (`--date` a week later). Each DIR is a checkout of this
repo (`git worktree add /tmp/before <commit>`). Each round runs `python -m
pipeline.train_model COPY --force` from each checkout in turn, each on a fresh copy of the
store, so that every checkout meets the same tranche, live model and state, and a slow
minute of a shared machine falls on all of them alike. Prints every run and, per checkout,
the median time, the highest peak (max RSS), and the median over rounds of its time over
the first checkout's in the same round.
"""
import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.processes import measure  # noqa: E402


def main(store: Path, checkouts: List[Path], repeats: int) -> None:
    runs: Dict[Path, List[Tuple[float, float]]] = {code: [] for code in checkouts}
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "store"
        for round_ in range(1, repeats + 1):
            for code in checkouts:
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(store, copy)
                command = [sys.executable, "-m", "pipeline.train_model", str(copy), "--force"]
                seconds, peak, exit_code = measure(command, code)
                if exit_code != 0:
                    raise SystemExit(f"{code}: train_model exited {exit_code} in round {round_}")
                runs[code].append((seconds, peak))
                print(f"round {round_}  {code}  {seconds:.2f} s  {peak:.0f} MiB", flush=True)
    first = [seconds for seconds, _ in runs[checkouts[0]]]
    print(f"\n{'checkout':<40} {'median s':>9} {'peak MiB':>9} {'vs first':>9}")
    for code in checkouts:
        times = [seconds for seconds, _ in runs[code]]
        paired = statistics.median(t / f for t, f in zip(times, first))
        print(f"{str(code):<40} {statistics.median(times):>9.2f} "
              f"{max(peak for _, peak in runs[code]):>9.0f} {paired:>8.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("checkouts", type=Path, nargs="+")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    main(args.store, [code.resolve() for code in args.checkouts], args.repeats)
