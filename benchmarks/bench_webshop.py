"""WebShop measurements (printed, not asserted).

1. Step latency of ``AgentTuning/WebShop-v0`` on the fixture catalogue: search, click, option, buy
   (the buy step runs spaCy's tagger on two titles and the fuzzy matches).
2. Search on a generated catalogue of N products (default 100k) in WebShop's document form: index
   build time, index memory (the bm25s arrays, and the process RSS growth), query latency p50/p99
   of the BM25 index against a linear scan that scores every document in the same run.

    python benchmarks/bench_webshop.py [--products 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from agent_gym.envs.webshop import engine, prompt
from agent_gym.envs.webshop.env import WebShopEnv

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "tests" / "fixtures" / "webshop" / "items_shuffle_fixture.json"
WORDS = ("red blue black white pink grey navy wireless bluetooth earbud headphone cable charger laptop stand desk chair "
         "sofa pillow memory foam cotton shirt dress shoe sneaker loafer boot sandal wig hair extension shampoo serum "
         "cream lotion scrub candle soy wax mug bottle steel glass ceramic organic gluten free snack almond chocolate "
         "tea coffee protein bar keto vegan travel portable waterproof lightweight adjustable large small medium pack "
         "set kit case cover bag wallet watch band strap ring necklace lamp light bulb curtain rug mat towel sheet "
         "blanket frame mirror shelf table storage box basket hook hanger").split()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def step_latency(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = WebShopEnv(catalogue=CATALOGUE, index_dir=tmp)
        goal = next(g for g in env.tasks() if g.asin == "B0FX000017")
        times: dict[str, list[float]] = {"reset": [], "search": [], "click item": [], "click option": [], "buy": []}
        for _ in range(rounds):
            t = time.perf_counter()
            env.reset(options={"task": goal.id})
            times["reset"].append(time.perf_counter() - t)
            for name, action in [("search", "search[blackout curtains grey]"), ("click item", "click[B0FX000017]"),
                                 ("click option", "click[grey]"), ("buy", "click[Buy Now]")]:
                t = time.perf_counter()
                env.step(prompt.reply("x", action))
                times[name].append(time.perf_counter() - t)
        print(f"step latency on the fixture catalogue ({len(env.catalogue.products)} products), {rounds} episodes:")
        for name, values in times.items():
            print(f"  {name:13s} p50 {pct(values, 50) * 1e3:7.2f} ms   p99 {pct(values, 99) * 1e3:7.2f} ms")
        env.close()


def generated_documents(n: int, rng: random.Random) -> list[str]:
    docs = []
    for i in range(n):
        title = " ".join(rng.choices(WORDS, k=rng.randint(5, 12)))
        description = " ".join(rng.choices(WORDS, k=rng.randint(10, 40)))
        options = f"color: {', '.join(rng.sample(WORDS[:7], 3))}, and size: {rng.randint(1, 12)} oz"
        docs.append(f"{title} model {i} {description} {title[:20]} {options}".lower())
    return docs


class LinearScan:
    """BM25 (Lucene's formula, same k1/b and analyzer) by scoring every document for every query."""

    def __init__(self, documents: list[str]):
        self.tfs = [Counter(engine.analyze(d)) for d in documents]
        self.lengths = np.array([sum(tf.values()) for tf in self.tfs], dtype=np.float64)
        self.avg = self.lengths.mean()
        df = Counter(t for tf in self.tfs for t in tf)
        n = len(documents)
        self.idf = {t: np.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}

    def search(self, keywords: str, k: int = engine.SEARCH_RETURN_N) -> list[int]:
        terms = [t for t in engine.analyze(keywords) if t in self.idf]
        k1, b = engine.BM25_K1, engine.BM25_B
        scores = []
        for i, tf in enumerate(self.tfs):
            s = 0.0
            norm = k1 * (1 - b + b * self.lengths[i] / self.avg)
            for t in terms:
                f = tf.get(t)
                if f:
                    s += self.idf[t] * f / (f + norm)
            if s > 0:
                scores.append((-s, i))
        scores.sort()
        return [i for _, i in scores[:k]]


def search_benchmark(n: int, queries: int, scan_queries: int) -> None:
    rng = random.Random(0)
    t = time.perf_counter()
    documents = generated_documents(n, rng)
    asins = [f"G{i:09d}" for i in range(n)]
    print(f"\ngenerated catalogue: {n} products in {time.perf_counter() - t:.1f} s")
    rss0 = rss_mb()
    t = time.perf_counter()
    index = engine.SearchIndex.build(documents, asins)
    build = time.perf_counter() - t
    arrays = sum(a.nbytes for a in index.retriever.scores.values() if isinstance(a, np.ndarray))
    print(f"index build (analyze + bm25s): {build:.1f} s; index arrays {arrays / 2**20:.1f} MiB; "
          f"peak RSS growth {rss_mb() - rss0:.0f} MiB")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        index._save(Path(tmp) / "idx")
        saved = time.perf_counter() - t
        t = time.perf_counter()
        again = engine.SearchIndex._load(Path(tmp) / "idx")
        loaded = time.perf_counter() - t
        size = sum(p.stat().st_size for p in (Path(tmp) / "idx").iterdir())
    print(f"on disk: {size / 2**20:.1f} MiB, saved in {saved:.2f} s, loaded in {loaded:.2f} s")
    qs = [" ".join(rng.choices(WORDS, k=rng.randint(2, 6))) for _ in range(queries)]
    lat = []
    for q in qs:
        t = time.perf_counter()
        index.search(q)
        lat.append(time.perf_counter() - t)
    print(f"BM25 index query ({queries} queries of 2-6 words): p50 {pct(lat, 50) * 1e3:.2f} ms, "
          f"p99 {pct(lat, 99) * 1e3:.2f} ms")
    t = time.perf_counter()
    scan = LinearScan(documents)
    print(f"linear scan setup (term counts of every document): {time.perf_counter() - t:.1f} s")
    slat, agree = [], 0
    for q in qs[:scan_queries]:
        t = time.perf_counter()
        got = scan.search(q)
        slat.append(time.perf_counter() - t)
        agree += [asins[i] for i in got[:10]] == again.search(q)[:10]
    print(f"linear scan query ({scan_queries} queries): p50 {pct(slat, 50) * 1e3:.1f} ms, p99 {pct(slat, 99) * 1e3:.1f} ms"
          f"; same top 10 as the index on {agree}/{scan_queries}")
    print(f"speed-up at p50: {statistics.median(slat) / statistics.median(lat):.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--scan-queries", type=int, default=20, help="queries for the (slow) linear scan")
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    step_latency(args.episodes)
    search_benchmark(args.products, args.queries, args.scan_queries)


if __name__ == "__main__":
    main()
