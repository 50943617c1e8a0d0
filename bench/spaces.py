"""Spaces benchmark: vector(1536) against halfvec(1536) for a 1536-dimension space.

    make bench-spaces                 # 100,000 vectors (about 13 min on 2 cores)
    python bench/spaces.py --rows 20000 --builds 1

Generates clustered unit vectors of 1536 dimensions (the size of OpenAI's
text-embedding-3-small) and loads the same vectors into a `vector(1536)` and a
`halfvec(1536)` table with COPY, on one embedded PostgreSQL. Builds an HNSW cosine index on
each (m=16, ef_construction=64), alternating the two types over --builds rounds, then
reports in one run: build time, index and table size, recall@10 at ef_search 40 and 100
against exact float32 neighbours computed in numpy, and query latency through psycopg with
every query sent to both tables in turn, first with the shipped shared_buffers, then with
both indexes held in shared_buffers. Writes docs/benchmarks-spaces.json and a section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector import HalfVector
from pgvector.psycopg import register_vector
from psycopg import sql
from sections import write_section

from service.ops.embedded import EmbeddedPostgres

DIMS = 1536
K = 10
EF_SEARCH = (40, 100)
M, EF_CONSTRUCTION = 16, 64  # pgvector's defaults, spelled out so both builds match
CLUSTERS = 300
LATENT_DIMS = 96
WARMUP_QUERIES = 50
ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "bench_spaces"
# kind -> (column type, operator class); the table is bench_spaces.<kind>
SPACES = {
    "vector": ("vector(1536)", "vector_cosine_ops"),
    "halfvec": ("halfvec(1536)", "halfvec_cosine_ops"),
}


class Corpus:
    """Clustered unit vectors with a low intrinsic dimension, as text embeddings have.

    Isotropic noise in 1536 dimensions puts every member of a cluster at almost the same
    distance from every other, which no real embedding model does. Here a point is its
    cluster's centre plus a draw in a shared 96-dimension subspace with a decaying spectrum,
    plus a little isotropic noise: neighbours are graded, as in real data.
    """

    def __init__(self, *, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.centers = _unit(rng.normal(size=(CLUSTERS, DIMS)))
        self.basis = np.linalg.qr(rng.normal(size=(DIMS, LATENT_DIMS)))[0].T  # orthonormal rows
        self.scales = 1.0 / np.sqrt(np.arange(1, LATENT_DIMS + 1))  # the spectrum
        self.scales *= 0.8 / np.linalg.norm(self.scales)  # latent offset of norm ~0.8

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        picks = self.centers[rng.integers(0, CLUSTERS, n)]
        latent = rng.normal(size=(n, LATENT_DIMS)) * self.scales
        noise = rng.normal(0, 0.25 / np.sqrt(DIMS), (n, DIMS))  # norm ~0.25
        return _unit(picks + latent @ self.basis + noise)


def _unit(vectors: np.ndarray) -> np.ndarray:
    unit: np.ndarray = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit.astype(np.float32)


def exact_top_k(data: np.ndarray, queries: np.ndarray, *, k: int = K) -> np.ndarray:
    """Ids (row numbers) of the k nearest rows by cosine distance, brute force."""
    similarity = queries @ data.T  # unit vectors: cosine similarity
    top = np.argpartition(-similarity, k, axis=1)[:, :k]
    order = np.take_along_axis(-similarity, top, axis=1).argsort(axis=1)
    return np.take_along_axis(top, order, axis=1)


def quantization_recall(data: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> float:
    """Recall@10 of an exact search over half-precision copies: halfvec's ceiling."""
    halves = data.astype(np.float16).astype(np.float32)
    found = exact_top_k(halves, queries.astype(np.float16).astype(np.float32))
    return _recall(found, truth)


def _recall(found: np.ndarray | list[list[int]], truth: np.ndarray) -> float:
    rows = found.tolist() if isinstance(found, np.ndarray) else found
    hits = [len(set(f) & set(t)) for f, t in zip(rows, truth.tolist(), strict=True)]
    return sum(hits) / truth.size


def _table(kind: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, kind)


def _param(kind: str, vector: np.ndarray) -> np.ndarray | HalfVector:
    return HalfVector(vector) if kind == "halfvec" else vector


def load(conn: psycopg.Connection[Any], kind: str, data: np.ndarray) -> float:
    """Create the table and COPY the vectors in (binary); return the seconds taken."""
    column_type = sql.SQL(SPACES[kind][0])  # a literal of ours, never input
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_table(kind)))
    conn.execute(
        sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, embedding {} NOT NULL)").format(
            _table(kind), column_type
        )
    )
    started = time.perf_counter()
    with conn.cursor() as cur:
        copy_sql = sql.SQL("COPY {} (id, embedding) FROM STDIN WITH (FORMAT BINARY)")
        with cur.copy(copy_sql.format(_table(kind))) as copy:
            copy.set_types(["int8", kind])
            for n, vector in enumerate(data):
                copy.write_row((n, _param(kind, vector)))
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(_table(kind)))
    return time.perf_counter() - started


def build_index(conn: psycopg.Connection[Any], kind: str) -> float:
    """(Re)build the HNSW cosine index; return the seconds taken."""
    conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(SCHEMA, f"{kind}_hnsw")))
    conn.execute("CHECKPOINT")  # the last build's or load's dirty pages are not this build's
    create = sql.SQL(
        "CREATE INDEX {} ON {} USING hnsw (embedding {}) WITH (m = {}, ef_construction = {})"
    )
    opclass = sql.SQL(SPACES[kind][1])  # a literal of ours, never input
    started = time.perf_counter()
    conn.execute(
        create.format(sql.Identifier(f"{kind}_hnsw"), _table(kind), opclass, M, EF_CONSTRUCTION)
    )
    return time.perf_counter() - started


def sizes_mb(conn: psycopg.Connection[Any], kind: str) -> dict[str, float]:
    """Index size, and table size with its TOAST (both types' values exceed 2 kB: toasted)."""
    row = conn.execute(
        "SELECT pg_relation_size(%(index)s::regclass), pg_table_size(%(table)s::regclass), "
        "pg_relation_size(%(table)s::regclass)",
        {"index": f"{SCHEMA}.{kind}_hnsw", "table": f"{SCHEMA}.{kind}"},
    ).fetchone()
    assert row is not None
    index, table, heap = (value / 2**20 for value in row)
    return {"index_mb": index, "table_mb": table, "heap_mb": heap, "toast_mb": table - heap}


def search_sql(kind: str) -> sql.Composed:
    return sql.SQL("SELECT id FROM {} ORDER BY embedding <=> %b LIMIT {}").format(_table(kind), K)


def check_plan(conn: psycopg.Connection[Any], kind: str, probe: np.ndarray) -> None:
    """Refuse to time anything but an HNSW index scan."""
    plan = conn.execute(sql.SQL("EXPLAIN ") + search_sql(kind), [_param(kind, probe)]).fetchall()
    text = "\n".join(line[0] for line in plan)
    assert f"{kind}_hnsw" in text, text


def percentiles(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    at = {name: ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000
          for name, p in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99))}  # fmt: skip
    return {**at, "n": len(seconds)}


def search_pass(
    conn: psycopg.Connection[Any], queries: np.ndarray, *, ef_search: int
) -> tuple[dict[str, list[list[int]]], dict[str, list[float]]]:
    """Ids found and seconds taken per table, each query sent to both (order alternating)."""
    conn.execute(sql.SQL("SET hnsw.ef_search = {}").format(ef_search))
    kinds = list(SPACES)
    found: dict[str, list[list[int]]] = {kind: [] for kind in kinds}
    seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
    for n, vector in enumerate(queries):
        for kind in kinds if n % 2 == 0 else kinds[::-1]:
            started = time.perf_counter()
            rows = conn.execute(search_sql(kind), [_param(kind, vector)], prepare=True).fetchall()
            seconds[kind].append(time.perf_counter() - started)
            found[kind].append([row[0] for row in rows])
    return found, seconds


def search_side_by_side(
    conn: psycopg.Connection[Any], queries: np.ndarray, warmup: np.ndarray, truth: np.ndarray,
    *, rounds: int,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Recall@10 and latency of both tables at each ef_search; latency is the median of rounds.

    A burst of load from a neighbour on a shared machine spoils a round, not the figure.
    """
    kinds = list(SPACES)
    out: dict[str, dict[str, Any]] = {kind: {"recall": {}, "latency": {}} for kind in kinds}
    per_round: dict[tuple[str, int], list[dict[str, float]]] = {}
    for round_ in range(rounds):
        for ef in EF_SEARCH if round_ % 2 == 0 else EF_SEARCH[::-1]:
            search_pass(conn, warmup, ef_search=ef)  # caches and prepared statements
            found, seconds = search_pass(conn, queries, ef_search=ef)
            for kind in kinds:
                out[kind]["recall"][str(ef)] = _recall(found[kind], truth)  # same every round
                per_round.setdefault((kind, ef), []).append(percentiles(seconds[kind]))
    for (kind, ef), figures in per_round.items():
        out[kind]["latency"][str(ef)] = {
            "p50_ms": statistics.median(f["p50_ms"] for f in figures),
            "p95_ms": statistics.median(f["p95_ms"] for f in figures),
            "rounds": figures,
        }
    return out


def hold_in_shared_buffers(postgres: EmbeddedPostgres, url: str, *, megabytes: int) -> None:
    """Restart with shared_buffers of ``megabytes`` and load both indexes and heaps into it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER SYSTEM SET shared_buffers = {}").format(f"{megabytes}MB"))
    postgres.stop()
    postgres.start()
    with psycopg.connect(url, autocommit=True) as conn:
        assert server_settings(conn)["shared_buffers"] == f"{megabytes} MB"
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        for kind in SPACES:
            for relation in (f"{SCHEMA}.{kind}_hnsw", f"{SCHEMA}.{kind}"):
                conn.execute("SELECT pg_prewarm(%s::regclass)", [relation])


def forget_shared_buffers(url: str) -> None:
    """Leave the cluster configured as we found it (for a later run with --home)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM RESET shared_buffers")


def prepare_data(
    conn: psycopg.Connection[Any], data: np.ndarray, home: Path, *, rows: int, builds: int,
    reuse: bool,
) -> dict[str, Any]:  # fmt: skip
    """Load both tables and build both indexes, or reuse those of an earlier run in ``home``."""
    timings_file = home / "spaces-timings.json"
    if reuse and timings_file.exists():
        timings: dict[str, Any] = json.loads(timings_file.read_text())
        if timings.get("rows") == rows:
            print(f"reusing the {rows:,} vectors and indexes in {home}", flush=True)
            return timings
    timings = {"rows": rows, "load_s": {}, "build_s": {kind: [] for kind in SPACES}}
    for kind in SPACES:
        timings["load_s"][kind] = load(conn, kind, data)
        print(f"loaded {kind} in {timings['load_s'][kind]:.1f} s", flush=True)
    for round_ in range(builds):
        for kind in SPACES if round_ % 2 == 0 else list(SPACES)[::-1]:
            timings["build_s"][kind].append(build_index(conn, kind))
            print(f"built {kind} HNSW in {timings['build_s'][kind][-1]:.1f} s", flush=True)
    timings_file.write_text(json.dumps(timings))
    return timings


def server_settings(conn: psycopg.Connection[Any]) -> dict[str, str]:
    names = ["server_version", "shared_buffers", "maintenance_work_mem",
             "max_parallel_maintenance_workers"]  # fmt: skip
    rows = conn.execute("SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)", [names])
    settings = {name: _with_unit(setting, unit) for name, setting, unit in rows}
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert row is not None
    return {**settings, "pgvector": row[0]}


def _with_unit(setting: str, unit: str | None) -> str:
    """pg_settings counts memory in pages of 8 kB or in kB; say it in MB."""
    per_unit = {"8kB": 8, "kB": 1}.get(unit or "")
    return f"{int(setting) * per_unit // 1024} MB" if per_unit else setting


def write_report(results: dict[str, Any]) -> None:
    (ROOT / "docs" / "benchmarks-spaces.json").write_text(json.dumps(results, indent=2) + "\n")
    write_section("spaces", "\n".join(report_lines(results)))


def report_lines(results: dict[str, Any]) -> list[str]:
    rows, server = results["rows"], results["server"]
    return [
        "## vector(1536) vs halfvec(1536)",
        "",
        f"From `make bench-spaces` (`bench/spaces.py`, {results['date']}): {rows:,} clustered "
        "unit vectors of 1536 dimensions (the size of text-embedding-3-small), loaded into a "
        "`vector(1536)` and a `halfvec(1536)` table, each with an HNSW cosine index "
        f"(m={M}, ef_construction={EF_CONSTRUCTION}, maintenance_work_mem "
        f"{server['maintenance_work_mem']}, max_parallel_maintenance_workers "
        f"{server['max_parallel_maintenance_workers']}). PostgreSQL {server['server_version']}, "
        f"pgvector {server['pgvector']}, on the shared 2-core development machine, one run. "
        f"Build time is the median of {results['builds']} builds per type, alternating. "
        f"Recall@10 is against exact float32 neighbours computed in numpy, over "
        f"{results['queries']} queries not in the table. Latency is "
        "`SELECT id ... ORDER BY embedding <=> $1 LIMIT 10` through psycopg, every query sent "
        f"to both tables in turn; the median over {results['rounds']} rounds of each round's "
        f"p50 and p95, first with the shipped shared_buffers ({server['shared_buffers']}, "
        "smaller than either index: pages come from the OS cache), then restarted with "
        f"shared_buffers {results['cached_shared_buffers_mb']} MB and both indexes prewarmed.",
        "",
        *table_lines(results),
        "",
        "Exact search over half-precision copies of the same vectors (numpy) finds "
        f"{results['halfvec_exact_recall_at_10']:.3f} of the float32 top 10: what rounding to "
        "halfvec costs before the graph loses anything. Two HNSW graphs built from the same "
        "rows differ (the parallel build inserts in no fixed order), so recall differences "
        "of a few points between the types, either way, come from the graph, not the type.",
        "",
        results["conclusion"],
        "",
    ]


def table_lines(results: dict[str, Any]) -> list[str]:
    v, h = results["spaces"]["vector"], results["spaces"]["halfvec"]
    lines = [
        "| | vector(1536) | halfvec(1536) | halfvec / vector |",
        "| --- | --- | --- | --- |",
    ]
    for label, key, unit in [
        ("HNSW build", "build_s", "s"),
        ("index size", "index_mb", "MB"),
        ("table size (heap + TOAST)", "table_mb", "MB"),
    ]:
        lines.append(
            f"| {label} | {v[key]:.0f} {unit} | {h[key]:.0f} {unit} | {h[key] / v[key]:.2f} |"
        )
    for ef in EF_SEARCH:
        a, b = v["recall"][str(ef)], h["recall"][str(ef)]
        lines.append(f"| recall@10, ef_search {ef} | {a:.3f} | {b:.3f} | |")
    where = {
        "shipped": f"shared_buffers {results['server']['shared_buffers']}",
        "cached": "indexes in shared_buffers",
    }
    for ef in EF_SEARCH:
        for mode, label in where.items():
            a, b = v["latency"][mode][str(ef)], h["latency"][mode][str(ef)]
            lines.append(
                f"| p50 / p95, ef_search {ef}, {label} | {a['p50_ms']:.1f} / {a['p95_ms']:.1f} ms"
                f" | {b['p50_ms']:.1f} / {b['p95_ms']:.1f} ms | {b['p50_ms'] / a['p50_ms']:.2f}"
                f" / {b['p95_ms'] / a['p95_ms']:.2f} |"
            )
    return lines


def conclusion(spaces: dict[str, dict[str, Any]], *, exact_half: float) -> str:
    """The paragraph of the report; the figures decide its verdict and its words."""
    v, h = spaces["vector"], spaces["halfvec"]
    loss = max(v["recall"][str(ef)] - h["recall"][str(ef)] for ef in EF_SEARCH)
    size = (h["index_mb"] + h["table_mb"]) / (v["index_mb"] + v["table_mb"])
    build = h["build_s"] / v["build_s"]
    if loss > 0.01 or size > 0.75:
        return (
            f"**Keep `vector(1536)`.** halfvec loses up to {loss:.3f} of recall@10 for "
            f"{1 - size:.0%} fewer bytes here; that is not a trade worth making."
        )

    def p50_ratio(mode: str) -> float:
        latency = [(v["latency"][mode][str(ef)], h["latency"][mode][str(ef)]) for ef in EF_SEARCH]
        return statistics.mean(float(b["p50_ms"] / a["p50_ms"]) for a, b in latency)

    recall_words = (
        f"loses at most {loss:.3f} of recall@10"
        if loss > 0
        else "loses no recall@10 at either ef_search (it found more here: the graph's luck)"
    )
    misses = " and ".join(f"{1 - v['recall'][str(ef)]:.3f} at ef_search {ef}" for ef in EF_SEARCH)
    return (
        f"**Choose `halfvec(1536)`.** With the same graph settings it stores the space in "
        f"{size:.0%} of vector's bytes (index and table) and builds its index in {build:.0%} "
        f"of the time; its p50 is {p50_ratio('cached'):.0%} of vector's with both indexes in "
        f"shared_buffers and {p50_ratio('shipped'):.0%} when pages come from the OS cache; "
        f"and it {recall_words}. Precision is not what limits recall: an exact search over "
        f"half floats finds {exact_half:.3f} of the float32 top 10, while HNSW over full "
        f"floats misses, of the top 10, {misses}; if recall must rise, spend the saving on "
        "ef_search or m. Half the bytes also means twice the vectors fit in memory before "
        "searches start reading from disk, which is where HNSW latency goes as a corpus "
        "grows. Latencies come from a shared machine: read their ratios, not their values."
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--builds", type=int, default=3, help="index builds per type (median)")
    parser.add_argument("--rounds", type=int, default=5, help="latency rounds (median)")
    parser.add_argument(
        "--home", type=Path, help="reuse the data of an earlier run in this home (skips loading)"
    )
    args = parser.parse_args()
    corpus = Corpus(seed=0)
    data = corpus.draw(np.random.default_rng(1), args.rows)
    queries = corpus.draw(np.random.default_rng(2), args.queries)
    warmup = corpus.draw(np.random.default_rng(3), WARMUP_QUERIES)
    started = time.perf_counter()
    truth = exact_top_k(data, queries)
    halfvec_exact = quantization_recall(data, queries, truth)
    print(f"exact top {K} in {time.perf_counter() - started:.1f} s; "
          f"half-precision exact recall {halfvec_exact:.3f}", flush=True)  # fmt: skip
    home = args.home or Path(tempfile.mkdtemp(prefix="engram-bench-spaces-"))
    postgres = EmbeddedPostgres(home)
    url = postgres.start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
            register_vector(conn)
            conn.execute("SET maintenance_work_mem = '2GB'")
            conn.execute("SET max_parallel_maintenance_workers = 1")
            print(f"{args.rows:,} vectors in {home}", flush=True)
            timings = prepare_data(conn, data, home, rows=args.rows, builds=args.builds,
                                   reuse=args.home is not None)  # fmt: skip
            server = server_settings(conn)
            spaces: dict[str, dict[str, Any]] = {}
            for kind in SPACES:
                check_plan(conn, kind, queries[0])
                spaces[kind] = {
                    "build_s": statistics.median(timings["build_s"][kind]),
                    "build_runs_s": timings["build_s"][kind], "load_s": timings["load_s"][kind],
                    **sizes_mb(conn, kind),
                }  # fmt: skip
            shipped = search_side_by_side(conn, queries, warmup, truth, rounds=args.rounds)
        held = sum(space["index_mb"] + space["heap_mb"] for space in spaces.values())
        cache_mb = 256 * (int(held * 1.25) // 256 + 2)  # room for both, and a margin
        hold_in_shared_buffers(postgres, url, megabytes=cache_mb)
        with psycopg.connect(url, autocommit=True) as conn:
            register_vector(conn)
            cached = search_side_by_side(conn, queries, warmup, truth, rounds=args.rounds)
    finally:
        with contextlib.suppress(psycopg.Error):
            forget_shared_buffers(url)
        postgres.stop()
    for kind, space in spaces.items():
        space["recall"] = shipped[kind]["recall"]
        space["latency"] = {"shipped": shipped[kind]["latency"], "cached": cached[kind]["latency"]}
        print(kind, json.dumps({k: space[k] for k in ("recall", "build_runs_s")}), flush=True)
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"), "rows": args.rows, "queries": args.queries,
        "builds": len(timings["build_s"]["vector"]), "rounds": args.rounds, "dims": DIMS,
        "m": M, "ef_construction": EF_CONSTRUCTION, "server": server,
        "cached_shared_buffers_mb": cache_mb, "halfvec_exact_recall_at_10": halfvec_exact,
        "spaces": spaces,
    }  # fmt: skip
    results["conclusion"] = conclusion(spaces, exact_half=halfvec_exact)
    print("\n".join(table_lines(results)))
    write_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
