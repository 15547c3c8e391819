"""Does the weekly run hold at a million products? The same rows over 10k and over ~1M codes.

Run: python benchmarks/catalogue.py [--rows 4000000] [--codes 10000 1000000] [--zipf 0.8]
                                   [--repeats 3] [--history on|off]
For each catalogue, two weeks of a real-shaped tranche (Zipf popularity over the codes, so
the tail's products come and go between weeks: some missing, some new) are dropped into a
scratch store; for each week `python -m pipeline.train_model` runs as a whole process with
the default settings, learning from last week's state, or with `--history off` each week
alone, as before the history (wall time and peak RSS, measured by the OS; the median of
`--repeats` runs, each on a copy of the store as the week found it, alternating the two
catalogues' runs of the same week so that the machine's drift hits both), then the service starts
on the newest model (seconds from start to /ready, and its RSS once ready) and answers one
of the week's rarest products. Printed: one row per catalogue and week, then the ratios of
the large catalogue to the small one (of the medians, and the median of each side-by-side
pair's ratio, which a slow minute on the machine moves less), and the targets.
"""
import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Dict, List, NamedTuple

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.generate_dataset import generate_tranche, to_csv_bytes  # noqa: E402
from pipeline.registry.published import (  # noqa: E402
    artifact_key,
    metadata_key,
    published_versions,
    read_metadata,
)
from pipeline.registry.store import LocalStore  # noqa: E402
from pipeline.data.tranche import PRODUCT, tranche_key  # noqa: E402
from pipeline.training.history_steps import HISTORY_MODES  # noqa: E402
from tests.processes import free_port, measure, start_service, stop_service  # noqa: E402


class Week(NamedTuple):
    codes: int
    week: int
    products: int  # products with rows this week
    answered: int  # products the published model answers (carried included)
    train_s: float
    train_peak_mib: float
    metadata_kib: float
    artifact_mib: float
    ready_s: float
    rss_mib: float
    answer: int  # status of the estimate for the week's rarest product
    train_runs: List[float]  # each run's seconds, in the order run (paired across catalogues)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def train(store: LocalStore, history: str) -> "tuple[float, float, int]":
    return measure([sys.executable, "-m", "pipeline.train_model", store.uri,
                    "--history", history])


def serve(store: LocalStore, code: str) -> "tuple[float, float, int]":
    port = free_port()
    started = time.perf_counter()
    service = start_service(
        ["-m", "pipeline.serve_model", store.uri, "--port", str(port)], port, timeout=120
    )
    try:
        ready = time.perf_counter() - started
        memory = rss_mib(service.pid)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/v0.1/time_to_dispatch",
            json={"product_code": code, "orders_placed": 40}, timeout=10,
        ).status_code
    finally:
        stop_service(service)
    return ready, memory, answer


def run_weeks(rows: int, catalogues: List[int], zipf: float, repeats: int, history: str
              ) -> Dict[int, List[Week]]:
    results: Dict[int, List[Week]] = {codes: [] for codes in catalogues}
    with tempfile.TemporaryDirectory() as scratch:
        stores = {codes: Path(scratch) / f"store-{codes}" for codes in catalogues}
        for week in (1, 2):
            rarest, products = {}, {}
            for codes in catalogues:
                data = generate_tranche(rows, codes, seed=week, zipf=zipf).data
                LocalStore(str(stores[codes])).put_new(
                    tranche_key(datetime(2026, 11, 7 * week - 1, 23)), to_csv_bytes(data)
                )
                counts = data[PRODUCT].value_counts()
                rarest[codes], products[codes] = str(counts.index[-1]), len(counts)
                del data, counts
            runs: Dict[int, List["tuple[float, float, int]"]] = {c: [] for c in catalogues}
            for _ in range(repeats):
                for codes in catalogues:  # alternating: the machine's drift hits both
                    trial = Path(scratch) / f"trial-{codes}"
                    shutil.rmtree(trial, ignore_errors=True)
                    shutil.copytree(stores[codes], trial)
                    runs[codes].append(train(LocalStore(str(trial)), history))
            for codes in catalogues:
                if any(code != 0 for _, _, code in runs[codes]):
                    raise RuntimeError(f"training week {week} over {codes:,} codes failed")
                shutil.rmtree(stores[codes])  # the week goes on from the last run's store
                shutil.move(str(Path(scratch) / f"trial-{codes}"), str(stores[codes]))
                store = LocalStore(str(stores[codes]))
                version = published_versions(store)[0]
                metadata = read_metadata(store, version)
                ready, memory, answer = serve(store, rarest[codes])
                results[codes].append(Week(
                    codes, week, products[codes], metadata.products() or 0,
                    statistics.median(s for s, _, _ in runs[codes]),
                    max(m for _, m, _ in runs[codes]),
                    len(store.get_bytes(metadata_key(version))) / 1024,
                    len(store.get_bytes(artifact_key(version))) / 2**20, ready, memory, answer,
                    [s for s, _, _ in runs[codes]],
                ))
                print(format_week(results[codes][-1]) + "   runs: "
                      + " ".join(f"{s:.2f}" for s, _, _ in runs[codes]), flush=True)
    return results


HEADER = (f"{'codes':>9} {'week':>4} {'products':>9} {'answered':>9} {'train s':>8} "
          f"{'peak MiB':>8} {'meta KiB':>8} {'art. MiB':>8} {'ready s':>7} {'RSS MiB':>7} "
          f"{'answer':>6}")


def format_week(w: Week) -> str:
    return (f"{w.codes:>9,} {w.week:>4} {w.products:>9,} {w.answered:>9,} {w.train_s:>8.2f} "
            f"{w.train_peak_mib:>8.0f} {w.metadata_kib:>8.1f} {w.artifact_mib:>8.1f} "
            f"{w.ready_s:>7.2f} {w.rss_mib:>7.0f} {w.answer:>6}")


def main(rows: int, small: int, large: int, zipf: float, repeats: int, history: str) -> None:
    print(f"{rows:,} rows a week, Zipf {zipf} popularity; train_model (--history {history}) "
          f"and serve_model, otherwise default settings; training: median time and highest "
          f"peak of {repeats} run(s)")
    print(HEADER)
    results = run_weeks(rows, [small, large], zipf, repeats, history)
    print("\nlarge / small, per week:")
    for a, b in zip(results[large], results[small]):
        paired = statistics.median(x / y for x, y in zip(a.train_runs, b.train_runs))
        print(f"  week {a.week}: train time {a.train_s / b.train_s:.2f}x (target <= 1.5; "
              f"median of the {len(a.train_runs)} side-by-side pairs' ratios {paired:.2f}x), "
              f"peak {a.train_peak_mib / b.train_peak_mib:.2f}x, ready "
              f"{a.ready_s / b.ready_s:.2f}x, RSS {a.rss_mib / b.rss_mib:.2f}x")
    big = results[large]
    print("targets at the large catalogue: "
          f"metadata <= 256 KiB: {max(w.metadata_kib for w in big):.1f} KiB; "
          f"ready <= 3 s: {max(w.ready_s for w in big):.2f} s; "
          f"RSS <= 250 MiB: {max(w.rss_mib for w in big):.0f} MiB; "
          f"training peak <= 1024 MiB: {max(w.train_peak_mib for w in big):.0f} MiB; "
          f"every week answered: {all(w.answer == 200 for w in big)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--codes", type=int, nargs=2, default=[10_000, 1_000_000],
                        metavar=("SMALL", "LARGE"))
    parser.add_argument("--zipf", type=float, default=0.8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--history", choices=HISTORY_MODES, default="on")
    args = parser.parse_args()
    main(args.rows, args.codes[0], args.codes[1], args.zipf, args.repeats, args.history)
