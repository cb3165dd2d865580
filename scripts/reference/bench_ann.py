"""Recall@10 and single-thread QPS of faiss IndexHNSWFlat, hnswlib, and the 8-bit peers of
facedex's codes (faiss IndexHNSWSQ with QT_8bit, usearch with i8 vectors) on the vectors that
`cargo bench -p facedex-index --bench ann_recall_qps` wrote (same data, same exact top-10).

usage: bench_ann.py DATA_DIR M EF_CONSTRUCTION EF,EF,... [LIBRARY,...]   (one JSON object per line)
LIBRARY: faiss, hnswlib, faiss-hnswsq, usearch (default all). Resident memory per face is the
growth of this process over a build, so a fair figure needs one library per process (freed
memory of an earlier build is reused by the next): scripts/bench-index runs them one by one.
Builds use every core, as the Rust side does; searches run on one thread, a batch per call.
Each built index is saved in DATA_DIR with its build line; a later run with the same data and
parameters loads it and prints that line again with "reused_build": true (the 1M builds take
long enough that the searches are measured in a second run on a quiet machine).
"""

import json
import os
import sys
import time

import faiss
import hnswlib
import numpy as np
from usearch.index import Index as UsearchIndex

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


def cached_build(data_dir, library, vectors, m, ef_construction, build, save, load):
    """Returns (index, build line): loaded from DATA_DIR when an earlier run built the same one."""
    stem = os.path.join(data_dir, f"{library}-{vectors}-m{m}-efc{ef_construction}")
    if os.path.exists(stem + ".json") and os.path.exists(stem + ".index"):
        with open(stem + ".json") as record:
            line = json.load(record)
        line["reused_build"] = True
        return load(stem + ".index"), line
    index, line = build()
    save(index, stem + ".index")
    with open(stem + ".json", "w") as record:
        json.dump(line, record)
    return index, line


def bench_faiss(data_dir, base, queries, truth, m, ef_construction, efs, threads, library="faiss"):
    """faiss IndexHNSWFlat (f32 vectors) or, as library "faiss-hnswsq", IndexHNSWSQ: the same
    graph over 8-bit scalar-quantised vectors (trained per dimension on the base set)."""
    quantized = library == "faiss-hnswsq"

    def build():
        faiss.omp_set_num_threads(threads)
        before = resident_bytes()
        if quantized:
            index = faiss.IndexHNSWSQ(base.shape[1], faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexHNSWFlat(base.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        started = time.perf_counter()
        if quantized:
            index.train(base)
        index.add(base)
        build_seconds = time.perf_counter() - started
        return index, dict(library=library, version=faiss.__version__, kind="build", vectors=len(base), m=m,
                           ef_construction=ef_construction, build_seconds=build_seconds, build_threads=threads,
                           rss_bytes_per_face=(resident_bytes() - before) / len(base))

    index, line = cached_build(data_dir, library, len(base), m, ef_construction, build,
                               faiss.write_index, faiss.read_index)
    emit(**line)
    faiss.omp_set_num_threads(1)
    for ef in efs:
        parameters = faiss.SearchParametersHNSW(efSearch=ef)
        started = time.perf_counter()
        _, found = index.search(queries, K, params=parameters)
        seconds = time.perf_counter() - started
        emit(library=library, kind="search", vectors=len(base), ef=ef, threads=1,
             recall_at_10=recall(found, truth), qps=len(queries) / seconds)


def bench_hnswlib(data_dir, base, queries, truth, m, ef_construction, efs, threads):
    def build():
        before = resident_bytes()
        index = hnswlib.Index(space="ip", dim=base.shape[1])
        index.init_index(max_elements=len(base), ef_construction=ef_construction, M=m)
        started = time.perf_counter()
        index.add_items(base, np.arange(len(base)), num_threads=threads)
        build_seconds = time.perf_counter() - started
        return index, dict(library="hnswlib", version=getattr(hnswlib, "__version__", "0.8.0"), kind="build",
                           vectors=len(base), m=m, ef_construction=ef_construction, build_seconds=build_seconds,
                           build_threads=threads, rss_bytes_per_face=(resident_bytes() - before) / len(base))

    def load(path):
        index = hnswlib.Index(space="ip", dim=base.shape[1])
        index.load_index(path, max_elements=len(base))
        return index

    index, line = cached_build(data_dir, "hnswlib", len(base), m, ef_construction, build,
                               lambda index, path: index.save_index(path), load)
    emit(**line)
    for ef in efs:
        index.set_ef(max(ef, K))
        started = time.perf_counter()
        found, _ = index.knn_query(queries, k=K, num_threads=1)
        seconds = time.perf_counter() - started
        emit(library="hnswlib", kind="search", vectors=len(base), ef=ef, threads=1,
             recall_at_10=recall(found, truth), qps=len(queries) / seconds)


def bench_usearch(data_dir, base, queries, truth, m, ef_construction, efs, threads):
    """usearch with i8 vectors (each component × 127, as usearch quantises unit vectors) and the
    inner product: the same connectivity and expansion as the others' M and ef."""
    def new_index():
        return UsearchIndex(ndim=base.shape[1], metric="ip", dtype="i8", connectivity=m,
                            expansion_add=ef_construction)

    def build():
        before = resident_bytes()
        index = new_index()
        started = time.perf_counter()
        index.add(np.arange(len(base)), base, threads=threads)
        build_seconds = time.perf_counter() - started
        return index, dict(library="usearch", version=usearch_version(), kind="build", vectors=len(base), m=m,
                           ef_construction=ef_construction, build_seconds=build_seconds, build_threads=threads,
                           rss_bytes_per_face=(resident_bytes() - before) / len(base))

    def load(path):
        index = new_index()
        index.load(path)
        return index

    index, line = cached_build(data_dir, "usearch", len(base), m, ef_construction, build,
                               lambda index, path: index.save(path), load)
    emit(**line)
    for ef in efs:
        index.expansion_search = max(ef, K)
        started = time.perf_counter()
        found = index.search(queries, K, threads=1).keys
        seconds = time.perf_counter() - started
        emit(library="usearch", kind="search", vectors=len(base), ef=ef, threads=1,
             recall_at_10=recall(found, truth), qps=len(queries) / seconds)


def usearch_version():
    from importlib.metadata import version

    return version("usearch")


def main():
    data_dir, m, ef_construction, efs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    efs = [int(ef) for ef in efs.split(",")]
    base = read_vecs(os.path.join(data_dir, "base.fvecs"), np.float32)
    queries = read_vecs(os.path.join(data_dir, "queries.fvecs"), np.float32)
    truth = read_vecs(os.path.join(data_dir, "groundtruth.ivecs"), np.int32)
    threads = os.cpu_count() or 1
    benches = {
        "faiss": bench_faiss,
        "hnswlib": bench_hnswlib,
        "faiss-hnswsq": lambda *arguments: bench_faiss(*arguments, library="faiss-hnswsq"),
        "usearch": bench_usearch,
    }
    libraries = sys.argv[5].split(",") if len(sys.argv) > 5 else list(benches)
    unknown = [library for library in libraries if library not in benches]
    if unknown:
        sys.exit(f"unknown libraries {unknown}: choose from {list(benches)}")
    for library in libraries:
        benches[library](data_dir, base, queries, truth, m, ef_construction, efs, threads)


if __name__ == "__main__":
    main()
