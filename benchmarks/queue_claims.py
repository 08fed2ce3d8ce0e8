"""Queue claims under contention: N worker processes drain M queued no-op runs from one registry.

Prints claims per second and how many runs were claimed more than once (must be 0).

    python benchmarks/queue_claims.py                         # SQLite in a temporary directory
    python benchmarks/queue_claims.py --db postgresql+psycopg://postgres@127.0.0.1:55432/bench
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tunelab.registry.db import default_url, open_registry  # noqa: E402
from tunelab.registry.run_state import claim_next, succeed  # noqa: E402
from tunelab.registry.submissions import NewExperiment, submit  # noqa: E402


def drain(url: str, worker: str, start, out) -> None:
    registry = open_registry(url)
    start.wait()
    claimed = []
    # As a worker claims: only runs whose [resources] gpus it can give (a CPU worker: none).
    while (run_id := claim_next(registry, worker, max_gpus=0)) is not None:
        succeed(registry, run_id, worker)  # the no-op run
        claimed.append(run_id)
    out.put(claimed)


def reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="registry URL (default: a fresh SQLite file); a PostgreSQL database is emptied")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or default_url(Path(tmp))
        if url.startswith("postgresql"):
            reset_postgres(url)
        registry = open_registry(url)
        submit(registry, [NewExperiment(name=f"noop-{i}", description="", tags=[], spec_path="-", spec_text="",
                                        resolved_json="{}", spec_hash=f"noop-{i}", workdir="/")
                          for i in range(args.runs)])
        context = multiprocessing.get_context("spawn")
        start, out = context.Event(), context.Queue()
        processes = [context.Process(target=drain, args=(url, f"w{i}", start, out)) for i in range(args.workers)]
        for process in processes:
            process.start()
        time.sleep(3)  # let every process import and connect before the clock starts
        began = time.perf_counter()
        start.set()
        per_worker = [out.get(timeout=600) for _ in processes]
        elapsed = time.perf_counter() - began
        for process in processes:
            process.join()

    claims = [run_id for claimed in per_worker for run_id in claimed]
    twice = sum(1 for count in collections.Counter(claims).values() if count > 1)
    backend = url.split(":", 1)[0]
    print(f"backend            {backend}")
    print(f"workers            {args.workers}")
    print(f"runs queued        {args.runs}")
    print(f"runs claimed       {len(claims)} ({len(set(claims))} distinct)")
    print(f"claimed twice      {twice}")
    print(f"claims per worker  {sorted(len(c) for c in per_worker)}")
    print(f"wall seconds       {elapsed:.2f}")
    print(f"claims per second  {len(claims) / elapsed:.0f}")
    sys.exit(0 if twice == 0 and len(set(claims)) == args.runs else 1)


if __name__ == "__main__":
    main()
