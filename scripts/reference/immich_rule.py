"""Immich's face clustering rule, re-implemented to compare facedex's people with, on the same
faces and embeddings (written by `cargo run --example people_quality`).

The rule is `handleRecognizeFaces` of immich-app/immich (server/src/services/person.service.ts)
with its defaults (`machineLearning.facialRecognition`: minFaces 3, maxDistance 0.5 cosine
distance). Faces are processed in order; for each face:
  - `matches`: the `minFaces` nearest faces within `maxDistance`, the face itself included;
  - only itself matched: skipped, the face stays unassigned;
  - fewer than `minFaces` matches (not a core point), on the first pass: deferred to the end of
    the queue; on the deferred pass it goes on below;
  - its person is that of the first match that has one; failing that, the person of the
    nearest face within `maxDistance` that has one (`hasPerson` search);
  - a core point without a person founds one;
  - otherwise it gets the person found, or stays unassigned.
That is single linkage (one labelled neighbour decides), and nothing stops two faces of one
photo from sharing a person. Immich searches with its vector index; this script searches
exactly (a brute-force scan), which can only help it.

Usage: immich_rule.py DIR   (reads DIR/embeddings.f32, writes DIR/immich.clusters: one
little-endian int64 per face, -1 for none; prints the seconds the clustering took)
"""

import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

MIN_FACES = 3
MAX_DISTANCE = 0.5
DIMENSION = 512
# Rows of the similarity matrix computed at once.
CHUNK = 512
# Nearest faces kept per face for the `hasPerson` search; a face none of whose nearest are
# labelled is searched again over every face.
KEPT_NEIGHBOURS = 64


def nearest(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The KEPT_NEIGHBOURS nearest faces of each face (itself included) and their similarity,
    nearest first."""
    count = len(embeddings)
    kept = min(KEPT_NEIGHBOURS, count)
    ids = np.empty((count, kept), dtype=np.int64)
    sims = np.empty((count, kept), dtype=np.float32)
    for start in range(0, count, CHUNK):
        block = embeddings[start : start + CHUNK] @ embeddings.T
        top = np.argpartition(-block, kept - 1, axis=1)[:, :kept]
        top_sims = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        ids[start : start + CHUNK] = np.take_along_axis(top, order, axis=1)
        sims[start : start + CHUNK] = np.take_along_axis(top_sims, order, axis=1)
    return ids, sims


def cluster(embeddings: np.ndarray) -> np.ndarray:
    ids, sims = nearest(embeddings)
    min_similarity = 1.0 - MAX_DISTANCE
    person = np.full(len(embeddings), -1, dtype=np.int64)
    next_person = 0
    queue = deque((face, False) for face in range(len(embeddings)))
    while queue:
        face, deferred = queue.popleft()
        within = sims[face] >= min_similarity
        matches = ids[face][within][:MIN_FACES]
        if MIN_FACES > 1 and len(matches) <= 1:
            continue
        is_core = len(matches) >= MIN_FACES
        if not is_core and not deferred:
            queue.append((face, True))
            continue
        found = next((person[match] for match in matches if person[match] >= 0), -1)
        if found < 0:
            labelled = [match for match in ids[face][within] if person[match] >= 0]
            if labelled:
                found = person[labelled[0]]
            elif within.all():
                # Every kept neighbour is within the distance: look further, over all faces.
                similarity = embeddings @ embeddings[face]
                candidates = np.flatnonzero((similarity >= min_similarity) & (person >= 0))
                if len(candidates):
                    found = person[candidates[np.argmax(similarity[candidates])]]
        if is_core and found < 0:
            found = next_person
            next_person += 1
        if found >= 0:
            person[face] = found
    return person


def main() -> None:
    folder = Path(sys.argv[1])
    embeddings = np.fromfile(folder / "embeddings.f32", dtype="<f4").reshape(-1, DIMENSION)
    started = time.perf_counter()
    person = cluster(embeddings)
    seconds = time.perf_counter() - started
    person.astype("<i8").tofile(folder / "immich.clusters")
    print(f"{seconds:.1f}")


if __name__ == "__main__":
    main()
