"""Filtered top-10 retrieval at 10k, 100k and 1M cases: Qdrant local mode, our qdrant_edge store, and exact numpy search
(the recall baseline). Build time, p50/p95 query latency, recall@10 against exact search with the same filter, peak RSS.

    python bench/retrieval.py                                  # 10k and 100k, every backend
    python bench/retrieval.py --sizes 1000000 --backends qdrant_edge --hnsw-ef 128 256 512
    python bench/retrieval.py --record                         # also append the table to docs/benchmarks.md

Vectors are real all-MiniLM-L6-v2 embeddings of case summaries made by the demo generator (embedded once, cached
under .bench-cache/); queries are embeddings of held-out summaries, filtered by industry and outcome as
`similar_cases` does. Sizes above the number of real embeddings are filled with jittered copies (see the notes).
Each size and backend runs in its own process, so peak RSS belongs to that configuration alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from common import ROOT, record

import numpy as np  # noqa: E402

CACHE = ROOT / ".bench-cache" / "retrieval"
CHUNK = 1000  # texts embedded per cached file: an interrupted or larger embedding reuses every chunk already there
SEED = 11
WARM_UP = 50  # queries run, untimed, after the build and before the timed ones


# ---------------------------------------------------------------- real embeddings of synthetic cases


def case_summaries(count: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """`count` distinct case summaries with their industry and outcome, drawn the way the demo CRM draws its deals."""
    from demo import generate as demo  # the demo's own deal maker: same vocabulary, templates and number ranges

    rng = random.Random(seed)
    orgs = demo._orgs(rng)
    contacts = demo._contacts(rng, orgs)
    span = (demo.LAST_CLOSE - demo.FIRST_CLOSE).days
    seen: set[str] = set()  # the demo redraws a repeated summary, so every text is distinct
    texts, industries, outcomes = [], [], []
    for number in range(count):
        org = rng.choice(orgs)
        closed_on = demo.FIRST_CLOSE + timedelta(days=rng.randrange(span + 1))
        deal = demo._past_deal(rng, f"bench-{number}", org, demo._account_contacts(contacts, org), closed_on,
                               rng.random() < demo.WON_SHARE, seen)
        texts.append(deal.case_summary)
        industries.append(org.account.industry)
        outcomes.append(deal.outcome)
    return texts, industries, outcomes


def embedded(texts: list[str], directory: Path) -> np.ndarray:
    """Embeddings of `texts`, computed once: chunks already in `directory` are read back, not recomputed.

    Text i depends only on the seed and i, so a chunk is named by its range and serves any longer list too.
    """
    from configs import load_settings
    from configs.loader import DEFAULT_CONFIG
    from tools.embedder import load_embedder

    directory.mkdir(parents=True, exist_ok=True)
    embedder = None
    chunks = [directory / f"{start:08d}-{min(start + CHUNK, len(texts)):08d}.npy" for start in range(0, len(texts), CHUNK)]
    for start, path in zip(range(0, len(texts), CHUNK), chunks):
        if path.exists():
            continue
        embedder = embedder or load_embedder(load_settings(DEFAULT_CONFIG, env={}).embedder)
        began = time.perf_counter()
        vectors = np.asarray(embedder.embed(texts[start : start + CHUNK]), dtype=np.float32)
        np.save(directory / "partial.npy", vectors)
        (directory / "partial.npy").replace(path)
        print(f"embedded {start + len(vectors)}/{len(texts)} ({len(vectors) / (time.perf_counter() - began):.0f} texts/s)", file=sys.stderr)
    return np.concatenate([np.load(path) for path in chunks])


class Dataset:
    """The points of one size and the queries: real embeddings first, jittered copies of them past `n_unique`."""

    def __init__(self, size: int, n_unique: int, n_queries: int):
        texts, industries, outcomes = case_summaries(n_unique + n_queries, SEED)
        real = embedded(texts, CACHE / f"summaries-{SEED}")
        self.queries, self.query_filters = real[n_unique:], list(zip(industries[n_unique:], outcomes[n_unique:]))
        self.neighbour_cosine = _median_neighbour_cosine(real[:n_unique])
        sources = np.arange(size) % n_unique
        self.vectors = real[sources]
        _jitter(self.vectors[n_unique:], self.neighbour_cosine)
        self.industries = np.asarray(industries[:n_unique])[sources]
        self.outcomes = np.asarray(outcomes[:n_unique])[sources]


def _median_neighbour_cosine(real: np.ndarray) -> float:
    """How close real cases sit: the median cosine between a case and its nearest other case (over 1,000 of them)."""
    sample = real[:: max(1, len(real) // 1000)]
    scores = sample @ real.T
    scores[scores > 0.99999] = -1.0  # the case itself
    return float(np.median(scores.max(axis=1)))


def _jitter(vectors: np.ndarray, cosine: float) -> None:
    """Add isotropic gaussian noise to each vector and renormalise, in place: its cosine to the original is about `cosine`.

    For a unit vector v and noise of per-dimension deviation s in d dimensions, cos(v, v + noise) ≈ 1 / sqrt(1 + d s²).
    Done a block at a time, so 1M vectors never need a second full-size array.
    """
    rng = np.random.default_rng(SEED)
    sigma = np.float32(np.sqrt((1 / cosine**2 - 1) / vectors.shape[1]))
    for start in range(0, len(vectors), 100_000):
        block = vectors[start : start + 100_000]
        block += rng.standard_normal(block.shape, dtype=np.float32) * sigma
        block /= np.linalg.norm(block, axis=1, keepdims=True)


# ---------------------------------------------------------------- one size and backend, in a process of its own


def measure(backend: str, size: int, args: argparse.Namespace) -> list[dict]:
    """One build, then the queries once per search beam (qdrant_edge) or once (the exact backends): one row each."""
    data = Dataset(size, args.unique, args.queries)
    beams = args.hnsw_ef if backend == "qdrant_edge" else [None]
    began = time.perf_counter()
    search, close = (_exact if backend == "exact" else _store)(backend, data)
    search(data.queries[0], *data.query_filters[0], beams[0])  # qdrant_edge builds its HNSW graph before its first search
    build_s = time.perf_counter() - began
    _timed_queries(search, data, beams[0], WARM_UP)  # untimed: the first queries after a build page its files in
    runs = [(ef, *_timed_queries(search, data, ef, len(data.queries))) for ef in beams]
    close()
    truth_path = CACHE / f"truth-{size}-{args.unique}-{args.queries}.json"
    if backend == "exact":
        truth_path.write_text(json.dumps(runs[0][2]))
    truth = json.loads(truth_path.read_text())
    return [{"backend": backend, "size": size, "hnsw_ef": ef, "build_s": build_s, "p50_ms": float(np.percentile(latencies, 50)),
             "p95_ms": float(np.percentile(latencies, 95)),
             "recall": float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)])),
             "rss_mib": _peak_rss_mib(), "load": os.getloadavg()[0], "neighbour_cosine": data.neighbour_cosine}
            for ef, latencies, found in runs]


def _timed_queries(search, data: Dataset, ef: int | None, count: int) -> tuple[list[float], list[list[int]]]:
    latencies, found = [], []
    for query, (industry, outcome) in zip(data.queries[:count], data.query_filters[:count]):
        began = time.perf_counter()
        found.append(search(query, industry, outcome, ef))
        latencies.append((time.perf_counter() - began) * 1000)
    return latencies, found


def _exact(_: str, data: Dataset):
    """Numpy brute force over each filter's points, grouped once (the build) so a query is one matrix product."""
    groups = {}
    for key in set(zip(data.industries.tolist(), data.outcomes.tolist())):
        rows = np.flatnonzero((data.industries == key[0]) & (data.outcomes == key[1]))
        groups[key] = (rows, data.vectors[rows])

    def search(query: np.ndarray, industry: str, outcome: str, _: None) -> list[int]:
        rows, vectors = groups[industry, outcome]
        scores = vectors @ query
        top = np.argpartition(-scores, min(10, len(rows) - 1))[:10]
        return rows[top[np.argsort(-scores[top])]].tolist()

    return search, lambda: None


def _store(backend: str, data: Dataset):
    """Our VectorStore for `backend`, filled through its own upsert in batches as `index_cases` does."""
    from configs.settings import VectorStoreSettings
    from tools.cases import FILTER_FIELDS
    from tools.vector_store import StoredPoint, open_vector_store

    directory = Path(tempfile.mkdtemp(prefix=f"bench-{backend}-", dir=CACHE))
    store = open_vector_store(VectorStoreSettings(backend=backend, path=directory), directory)
    store.ensure_collection(data.vectors.shape[1], FILTER_FIELDS)
    for start in range(0, len(data.vectors), CHUNK):
        store.upsert([StoredPoint(key=str(i), vector=data.vectors[i].tolist(),
                                  payload={"industry": data.industries[i], "outcome": data.outcomes[i]})
                      for i in range(start, min(start + CHUNK, len(data.vectors)))])

    def search(query: np.ndarray, industry: str, outcome: str, ef: int | None) -> list[int]:
        if ef is not None:
            store.hnsw_ef = ef
        return [int(h.key) for h in store.search(query.tolist(), 10, {"industry": industry, "outcome": outcome})]

    def close() -> None:
        store.close()
        shutil.rmtree(directory)

    return search, close


def _peak_rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


# ---------------------------------------------------------------- the table


def main() -> None:
    args = _args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args)))
        return
    Dataset(0, args.unique, args.queries)  # embeds what is not cached yet, once, before the timed processes
    rows = []
    for size in args.sizes:
        for backend in ["exact", *args.backends]:  # exact first: it writes the truth the others are scored against
            done = _rows(backend, size, args, rows)
            rows += done
            print(json.dumps(done), file=sys.stderr)
    table = _table(rows, args)
    print(table)
    if args.record:
        record("Retrieval: filtered top-10", table)


def _rows(backend: str, size: int, args: argparse.Namespace, done: list[dict]) -> list[dict]:
    if backend == "qdrant" and size > args.local_max:
        return [{"backend": backend, "size": size, "skipped": _extrapolated(done, size)}]
    child = [sys.executable, __file__, "--child", backend, str(size), "--unique", str(args.unique), "--queries", str(args.queries),
             "--hnsw-ef", *map(str, args.hnsw_ef)]
    result = subprocess.run(child, capture_output=True, text=True, check=False)
    if result.returncode != 0:  # the table says so; the other rows still count
        print(result.stderr[-3000:], file=sys.stderr)
        last = (result.stderr.strip().splitlines() or ["no output"])[-1][:120]
        return [{"backend": backend, "size": size, "skipped": f"failed (exit {result.returncode}: {last})"}]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _extrapolated(done: list[dict], size: int) -> str:
    """Local mode scans every point in Python: with two sizes measured, its p50 is extrapolated along their trend."""
    measured = sorted((r for r in done if r["backend"] == "qdrant" and "p50_ms" in r), key=lambda r: r["size"])
    if len(measured) < 2:
        return "not run"
    small, large = measured[0], measured[-1]
    exponent = np.log(large["p50_ms"] / small["p50_ms"]) / np.log(large["size"] / small["size"])
    seconds = large["p50_ms"] / 1000 * (size / large["size"]) ** exponent
    return (f"not run (~{seconds:.0f} s/query p50, extrapolated from {small['size']:,} and {large['size']:,}, "
            f"where time grew as size^{exponent:.2f})")


def _table(rows: list[dict], args: argparse.Namespace) -> str:
    names = {"exact": "exact (numpy brute force)", "qdrant": "qdrant local mode", "qdrant_edge": "qdrant_edge (QdrantEdgeStore)"}
    lines = ["| cases | backend | build s | p50 ms | p95 ms | recall@10 | peak RSS MiB | load avg |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['size']:,} | {names[r['backend']]} | {r['skipped']} | | | | | |")
        else:
            beam = f", hnsw_ef {r['hnsw_ef']}" if r["hnsw_ef"] else ""
            lines.append(f"| {r['size']:,} | {names[r['backend']]}{beam} | {r['build_s']:.1f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
                         f"{r['recall']:.3f} | {r['rss_mib']:.0f} | {r['load']:.1f} |")
    cosine = next(r["neighbour_cosine"] for r in rows if "neighbour_cosine" in r)
    notes = (f"\nVectors: all-MiniLM-L6-v2 embeddings (384-dim) of {args.unique:,} distinct case summaries from the demo generator "
             f"(its deal maker, vocabulary and templates, seed {SEED}). Sizes above {args.unique:,} repeat them as copies with "
             f"gaussian noise, renormalised, scaled so a copy's cosine to its source ({cosine:.3f}) equals the median cosine "
             "between a real case and its nearest real neighbour. Queries: embeddings of "
             f"{args.queries} held-out summaries, each filtered by its own industry and outcome (10–15% of the points "
             "match), top 10. Recall@10: share of the exact top 10 (same filter) found. Build: ensure_collection, upserts in "
             "batches of 1,000 through our VectorStore class, and the first query (which is when qdrant_edge builds its HNSW "
             f"graph, m 16, ef_construct 128; its searches use the hnsw_ef shown). Latency: after {WARM_UP} untimed queries. Peak RSS: VmHWM of the process that ran the row, "
             "including its copy of the vectors as a numpy array. Load avg: the machine's 1-minute load average when the row "
             "ended; other jobs shared its cores, and a load above the core count slows every row.")
    return "\n".join(lines) + "\n" + notes


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--backends", nargs="+", choices=["qdrant", "qdrant_edge"], default=["qdrant", "qdrant_edge"],
                        help="measured against exact search, which always runs")
    parser.add_argument("--unique", type=int, default=20_000, help="real embeddings; larger sizes add jittered copies")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--hnsw-ef", type=int, nargs="+", default=[128], help="qdrant_edge search beams, each measured on one build")
    parser.add_argument("--local-max", type=int, default=100_000, help="largest size Qdrant local mode is run at")
    parser.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    parser.add_argument("--child", nargs=2, metavar=("BACKEND", "SIZE"), help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    main()
