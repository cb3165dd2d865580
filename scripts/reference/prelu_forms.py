"""The embedder's speed on ONNX Runtime's CPU provider with each form of `PRelu` that facedex's
`vision.cpu_prelu` offers, written here with onnx's helpers the way
crates/facedex-vision/src/graph/prelu.rs writes them: `kernel` (the file as it is), `max`
(`Max(x, a*x)`) and `depthwise_conv` (`a*x + Relu((1 - a)*x)`, each product a depthwise 1x1
convolution). Prints, as JSON lines: each form's lowest cosine to the file's embeddings, its
faces/s per batch size on two threads (spinning off, as facedex runs it; the forms in turns,
ROUNDS times), its share of kernel time per operator at batch 16 from ONNX Runtime's profiler,
and its faces/s at batch 16 under each graph optimisation level (`basic`, `extended`, `all`: only
`all` has the blocked-channel layout), as the optional DETECTOR.onnx's photos/s at 640 x 640,
with the detector's own kernel time per operator.

Usage: prelu_forms.py MODEL.onnx [ROUNDS [DETECTOR.onnx]]
"""

import collections
import json
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from ort_op_profile import session

BATCHES = [1, 4, 16, 64]
LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def rate(s: ort.InferenceSession, batch: np.ndarray, seconds: float = 2) -> float:
    """Items per second of `s` on `batch` over `seconds`, after one warm-up run."""
    name = s.get_inputs()[0].name
    s.run(None, {name: batch})
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        s.run(None, {name: batch})
        runs += 1
    return round(runs * len(batch) / (time.perf_counter() - started), 1)


def kernel_time(path: str, batch: np.ndarray, profile_prefix: str) -> dict:
    """Kernel ms per run of `batch` and the share of kernel time per operator, over ten runs."""
    profiled = session(path, profile_prefix)
    name = profiled.get_inputs()[0].name
    for _ in range(10):
        profiled.run(None, {name: batch})
    per_op = collections.Counter()
    for event in json.load(open(profiled.end_profiling())):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"].get("op_name")] += event["dur"]
    total = sum(per_op.values())
    return {
        f"kernel_ms_per_run_of_{len(batch)}": round(total / 10 / 1000, 1),
        "share_of_kernel_time": {op: round(us / total, 3) for op, us in per_op.most_common(5)},
    }


def rewritten(source: str, form: str, scratch: str) -> str:
    model = onnx.load(source)
    graph = model.graph
    constants = {tensor.name: tensor for tensor in graph.initializer}
    nodes = []
    for node in graph.node:
        slopes = numpy_helper.to_array(constants[node.input[1]]) if node.op_type == "PRelu" else None
        if slopes is None or (slopes > 1).any():
            nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        if form == "max":
            nodes += [helper.make_node("Mul", [x, node.input[1]], [y + "_ax"]),
                      helper.make_node("Max", [x, y + "_ax"], [y])]
            continue
        channels = slopes.size
        for name, scales in [(y + "_rest_w", 1.0 - slopes), (y + "_slope_w", slopes)]:
            graph.initializer.append(numpy_helper.from_array(
                scales.reshape(channels, 1, 1, 1).astype(np.float32), name))
        conv = {"group": channels, "kernel_shape": [1, 1]}
        nodes += [helper.make_node("Conv", [x, y + "_rest_w"], [y + "_rest"], **conv),
                  helper.make_node("Relu", [y + "_rest"], [y + "_positive_rest"]),
                  helper.make_node("Conv", [x, y + "_slope_w"], [y + "_ax"], **conv),
                  helper.make_node("Add", [y + "_ax", y + "_positive_rest"], [y])]
    del graph.node[:]
    graph.node.extend(nodes)
    path = f"{scratch}/{form}.onnx"
    onnx.save(model, path)
    return path


def main() -> None:
    ort.set_default_logger_severity(3)
    source, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3
    faces = {b: np.random.default_rng(b).uniform(-1, 1, (b, 3, 112, 112)).astype(np.float32) for b in BATCHES}
    with tempfile.TemporaryDirectory() as scratch:
        paths = {"kernel": source} | {form: rewritten(source, form, scratch) for form in ["max", "depthwise_conv"]}
        sessions = {form: session(path, None) for form, path in paths.items()}
        name = sessions["kernel"].get_inputs()[0].name
        reference = sessions["kernel"].run(None, {name: faces[16]})[0]
        for form, s in sessions.items():
            out = s.run(None, {name: faces[16]})[0]
            cosine = (out * reference).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(reference, axis=1)
            print(json.dumps({"form": form, "lowest_cosine_to_file": float(cosine.min())}))
        rates = collections.defaultdict(list)
        for _ in range(rounds):
            for batch in BATCHES:
                for form, s in sessions.items():
                    rates[(form, batch)].append(rate(s, faces[batch]))
        for form in sessions:
            print(json.dumps({"form": form, "faces_per_s": {b: rates[(form, b)] for b in BATCHES}}))
        for form, path in paths.items():
            print(json.dumps({"form": form} | kernel_time(path, faces[16], f"{scratch}/profile-{form}")))
        models = {form: (path, faces[16]) for form, path in paths.items()}
        if len(sys.argv) > 3:
            models["detector"] = (sys.argv[3], np.random.default_rng(0).uniform(-1, 1, (1, 3, 640, 640)).astype(np.float32))
        for model, (path, batch) in models.items():
            by_level = {name: session(path, None, level) for name, level in LEVELS.items()}
            per_level = collections.defaultdict(list)
            for _ in range(2):
                for level, s in by_level.items():
                    per_level[level].append(rate(s, batch))
            print(json.dumps({"model": model, "per_s_by_optimisation_level": per_level}))
        if "detector" in models:
            path, batch = models["detector"]
            print(json.dumps({"model": "detector"} | kernel_time(path, batch, f"{scratch}/profile-detector")))


if __name__ == "__main__":
    main()
