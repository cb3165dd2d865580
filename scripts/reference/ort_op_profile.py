"""Where ONNX Runtime's CPU provider spends an embedder's time: ms per face at batch 16 on two
threads (spinning off, as facedex runs it), then the share of kernel time per operator type from
ONNX Runtime's profiler over ten runs. Prints one JSON object. scripts/reference/runtime-compare
runs it under two releases.

Usage: ort_op_profile.py MODEL.onnx
"""

import collections
import json
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort


def session(model: str, profile_prefix: str | None,
            level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.graph_optimization_level = level
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def main() -> None:
    model = sys.argv[1]
    plain = session(model, None)
    name = plain.get_inputs()[0].name
    faces = np.random.default_rng(0).uniform(-1, 1, (16, 3, 112, 112)).astype(np.float32)
    for _ in range(3):
        plain.run(None, {name: faces})
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < 5:
        plain.run(None, {name: faces})
        runs += 1
    ms_per_face = (time.perf_counter() - started) / runs / len(faces) * 1000
    with tempfile.TemporaryDirectory() as scratch:
        profiled = session(model, f"{scratch}/profile")
        for _ in range(10):
            profiled.run(None, {name: faces})
        events = json.load(open(profiled.end_profiling()))
    per_op = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"].get("op_name")] += event["dur"]
    total = sum(per_op.values())
    print(json.dumps({
        "onnxruntime": ort.__version__,
        "ms_per_face_batch16": round(ms_per_face, 2),
        "kernel_ms_per_run": round(total / 10 / 1000, 1),
        "share_of_kernel_time": {op: round(us / total, 3) for op, us in per_op.most_common(6)},
    }))


if __name__ == "__main__":
    main()
