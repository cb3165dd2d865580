"""Would int8 suit the ArcFace embedder? ONNX Runtime's own static quantiser (QDQ, per-channel
int8 weights, uint8 activations, MinMax calibration) over w600k_mbf.onnx, calibrated on every
other aligned face of the sample photos (InsightFace's detector and norm_crop) and tested on the
rest: cosine of each int8 embedding to the float one, and ms per face at batch 1 and 16 on two
threads. Prints one JSON object. BENCHMARKS.md, "Face attributes", has the figures.

Usage: int8_embedder.py ASSETS_DIR   (run with the environment scripts/reference/venv prints)
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from insightface.utils import face_align
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from insightface_faces import build_app


def session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ms_per_face(model: ort.InferenceSession, name: str, faces: np.ndarray, batch: int) -> float:
    x = faces[:batch]
    for _ in range(3):
        model.run(None, {name: x})
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < 3:
        model.run(None, {name: x})
        runs += 1
    return (time.perf_counter() - started) / runs / batch * 1000


def main() -> None:
    assets = Path(sys.argv[1])
    models = assets / "models"
    app = build_app(models / "scrfd_500m_bnkps.onnx", models / "w600k_mbf.onnx")
    photos = sorted(p for p in (assets / "photos").rglob("*") if p.is_file())
    chips = []
    for photo in photos:
        image = cv2.imread(str(photo))
        if image is not None:
            chips += [face_align.norm_crop(image, face.kps, 112) for face in app.get(image)]
    faces = np.stack([(c[:, :, ::-1].astype(np.float32) - 127.5) / 127.5 for c in chips]).transpose(0, 3, 1, 2)
    faces = np.ascontiguousarray(faces)
    calibration, test = faces[0::2], faces[1::2]
    source = str(models / "w600k_mbf.onnx")
    name = session(source).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.at = 0

        def get_next(self):
            if self.at >= len(calibration):
                return None
            self.at += 8
            return {name: calibration[self.at - 8 : self.at]}

    with tempfile.TemporaryDirectory() as scratch:
        # Per-channel dequantisation needs opset 13; the file is opset 11.
        opset13, prepared, quantized = (f"{scratch}/{n}.onnx" for n in ("opset13", "prepared", "int8"))
        onnx.save(version_converter.convert_version(onnx.load(source), 13), opset13)
        quant_pre_process(opset13, prepared, skip_symbolic_shape=True)
        quantize_static(prepared, quantized, Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
        float_model, int8_model = session(source), session(quantized)

        def embed(model):
            out = np.concatenate([model.run(None, {name: test[i : i + 1]})[0] for i in range(len(test))])
            return out / np.linalg.norm(out, axis=1, keepdims=True)

        cosine = (embed(float_model) * embed(int8_model)).sum(axis=1)
        print(json.dumps({
            "faces_calibration": len(calibration),
            "faces_test": len(test),
            "cosine_min": round(float(cosine.min()), 4),
            "cosine_median": round(float(np.median(cosine)), 4),
            "ms_per_face": {
                f"{label}_batch{batch}": round(ms_per_face(model, name, test, batch), 2)
                for label, model in (("f32", float_model), ("int8", int8_model))
                for batch in (1, 16)
            },
        }))


if __name__ == "__main__":
    main()
