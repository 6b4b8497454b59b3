"""Detect with MediaPipe Tasks' ObjectDetector: the client an Android app uses, from Python.

Runs in the tools environment (``.venv-tools``, made by ``make tools``), not odlite's:
``mediapipe`` pins absl-py 2.x where TensorFlow's stack needs 1.x. It imports only
the standard library and mediapipe, and prints one JSON object per image on stdout:
``{"image": path, "detections": [{"label", "score", "box": [xmin, ymin, xmax, ymax]}]}``
with boxes in the image's pixels. Usage::

    .venv-tools/bin/python pipelines/export/mediapipe_client.py MODEL.tflite IMAGE...
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import ObjectDetector, ObjectDetectorOptions

    options = ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=argv[0]), score_threshold=0.0)
    with ObjectDetector.create_from_options(options) as detector:
        for path in argv[1:]:
            result = detector.detect(mp.Image.create_from_file(path))
            detections = []
            for d in result.detections:
                box = d.bounding_box
                corners = [box.origin_x, box.origin_y, box.origin_x + box.width, box.origin_y + box.height]
                # Detections of several classes on the same box come back as one, with several categories.
                for c in d.categories:
                    detections.append({"label": c.category_name, "score": c.score, "box": corners})
            print(json.dumps({"image": path, "detections": detections}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
