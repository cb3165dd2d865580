"""Write InsightFace's faces for photos as JSON: the reference facedex's parity test compares with.

Runs `FaceAnalysis(allowed_modules=['detection', 'recognition'])` with
`prepare(ctx_id=-1, det_size=(640, 640), det_thresh=0.5)` on the two given model files, which is
what facedex reimplements. Embeddings are L2-normalised (InsightFace's `normed_embedding`).
"""

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import insightface
import onnxruntime
from insightface.app import FaceAnalysis


def build_app(detector: Path, embedder: Path) -> FaceAnalysis:
    # FaceAnalysis loads every .onnx in <root>/models/<name>/; give it exactly our two files.
    root = Path(tempfile.mkdtemp(prefix="facedex-reference-"))
    pack = root / "models" / "facedex"
    pack.mkdir(parents=True)
    shutil.copy(detector, pack / detector.name)
    shutil.copy(embedder, pack / embedder.name)
    app = FaceAnalysis(name="facedex", root=str(root), allowed_modules=["detection", "recognition"],
                       providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(640, 640), det_thresh=0.5)
    return app


def faces_of(app: FaceAnalysis, photo: Path) -> dict:
    image = cv2.imread(str(photo))
    if image is None:
        return {"path": photo.name, "error": "unreadable"}
    faces = app.get(image)
    return {
        "path": photo.name,
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "faces": [
            {
                "bbox": [round(float(v), 4) for v in face.bbox],
                "score": round(float(face.det_score), 6),
                "landmarks": [[round(float(x), 4), round(float(y), 4)] for x, y in face.kps],
                "embedding": [round(float(v), 6) for v in face.normed_embedding],
            }
            for face in faces
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--detector", type=Path, required=True)
    parser.add_argument("--embedder", type=Path, required=True)
    parser.add_argument("photos", type=Path, nargs="+")
    args = parser.parse_args()
    app = build_app(args.detector, args.embedder)
    document = {
        "generator": f"insightface {insightface.__version__}, onnxruntime {onnxruntime.__version__}, "
                     f"opencv {cv2.__version__}",
        "settings": "FaceAnalysis(allowed_modules=['detection','recognition']).prepare(ctx_id=-1, "
                    "det_size=(640, 640), det_thresh=0.5)",
        "photos": [faces_of(app, photo) for photo in args.photos],
    }
    json.dump(document, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
