"""InsightFace's throughput on the sample photos: cv2.imread + FaceAnalysis.get per photo.

Same models and settings as facedex's benchmark, on the ONNX Runtime release of the Python
environment it runs in (named in the output); prints one JSON object.
Usage: bench_insightface.py ASSETS_DIR ROUNDS
"""

import json
import sys
import time
from pathlib import Path

import cv2
import onnxruntime

from insightface_faces import build_app


def main() -> None:
    assets, rounds = Path(sys.argv[1]), int(sys.argv[2])
    photos = sorted(path for path in (assets / "photos").iterdir() if path.is_file())
    app = build_app(assets / "models" / "scrfd_500m_bnkps.onnx", assets / "models" / "w600k_mbf.onnx")

    def run(count: int):
        faces = 0
        started = time.perf_counter()
        for _ in range(count):
            for photo in photos:
                faces += len(app.get(cv2.imread(str(photo))))
        return len(photos) * count, faces, time.perf_counter() - started

    run(1)  # warm-up, as in facedex's benchmark
    photo_count, face_count, seconds = run(rounds)
    print(json.dumps({
        "implementation": f"insightface (onnxruntime {onnxruntime.__version__})",
        "photos": photo_count,
        "faces": face_count,
        "seconds": round(seconds, 3),
        "photos_per_s": round(photo_count / seconds, 2),
        "faces_per_s": round(face_count / seconds, 2),
    }))


if __name__ == "__main__":
    main()
