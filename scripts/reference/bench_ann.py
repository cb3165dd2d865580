"""Recall@10 and single-thread QPS of faiss IndexHNSWFlat and hnswlib on the vectors that
`cargo bench -p facedex-index --bench ann_recall_qps` wrote (same data, same exact top-10).

usage: bench_ann.py DATA_DIR M EF_CONSTRUCTION EF,EF,...   (prints one JSON object per line)
Builds use every core, as the Rust side does; searches run on one thread, a batch per call.
"""

import json
import os
import sys
import time

import faiss
import hnswlib
import numpy as np

K = 10


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    dimension = raw[0]
    rows = raw.reshape(-1, dimension + 1)[:, 1:]
    return np.ascontiguousarray(rows.view(dtype))


def resident_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def recall(found, truth):
    hits = sum(len(set(row[:K]) & set(expected)) for row, expected in zip(found, truth))
    return hits / (K * len(truth))


def emit(**fields):
    print(json.dumps(fields), flush=True)


def bench_faiss(base, queries, truth, m, ef_construction, efs, threads):
    faiss.omp_set_num_threads(threads)
    before = resident_bytes()
    index = faiss.IndexHNSWFlat(base.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    started = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - started
    emit(library="faiss", version=faiss.__version__, kind="build", vectors=len(base), m=m,
         ef_construction=ef_construction, build_seconds=build, build_threads=threads,
         rss_bytes_per_face=(resident_bytes() - before) / len(base))
    faiss.omp_set_num_threads(1)
    for ef in efs:
        parameters = faiss.SearchParametersHNSW(efSearch=ef)
        started = time.perf_counter()
        _, found = index.search(queries, K, params=parameters)
        seconds = time.perf_counter() - started
        emit(library="faiss", kind="search", vectors=len(base), ef=ef, threads=1,
             recall_at_10=recall(found, truth), qps=len(queries) / seconds)


def bench_hnswlib(base, queries, truth, m, ef_construction, efs, threads):
    before = resident_bytes()
    index = hnswlib.Index(space="ip", dim=base.shape[1])
    index.init_index(max_elements=len(base), ef_construction=ef_construction, M=m)
    started = time.perf_counter()
    index.add_items(base, np.arange(len(base)), num_threads=threads)
    build = time.perf_counter() - started
    emit(library="hnswlib", version=hnswlib.__version__ if hasattr(hnswlib, "__version__") else "0.8.0",
         kind="build", vectors=len(base), m=m, ef_construction=ef_construction, build_seconds=build,
         build_threads=threads, rss_bytes_per_face=(resident_bytes() - before) / len(base))
    for ef in efs:
        index.set_ef(max(ef, K))
        started = time.perf_counter()
        found, _ = index.knn_query(queries, k=K, num_threads=1)
        seconds = time.perf_counter() - started
        emit(library="hnswlib", kind="search", vectors=len(base), ef=ef, threads=1,
             recall_at_10=recall(found, truth), qps=len(queries) / seconds)


def main():
    data_dir, m, ef_construction, efs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    efs = [int(ef) for ef in efs.split(",")]
    base = read_vecs(os.path.join(data_dir, "base.fvecs"), np.float32)
    queries = read_vecs(os.path.join(data_dir, "queries.fvecs"), np.float32)
    truth = read_vecs(os.path.join(data_dir, "groundtruth.ivecs"), np.int32)
    threads = os.cpu_count() or 1
    bench_faiss(base, queries, truth, m, ef_construction, efs, threads)
    bench_hnswlib(base, queries, truth, m, ef_construction, efs, threads)


if __name__ == "__main__":
    main()
