"""``make package``: one archive with what an Android app needs, and how to use it.

``exported/<name>.tar.gz`` holds the .tflite models (metadata inside), labelmap.txt,
the export report and ANDROID.md. The SavedModel stays out: it is for servers, not
phones, and is larger than all the .tflite files together.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

from pipelines.artifacts import EXPORT_REPORT, LABELS_FILE, REPORT_PAGE, TFLITE_FILES, ExportRecord
from pipelines.atomic import atomic_file, refuse_overlap
from pipelines.errors import OdliteError

PACKED = (*TFLITE_FILES.values(), LABELS_FILE, REPORT_PAGE, EXPORT_REPORT)


def android_guide(record: ExportRecord) -> str:
    size = record.input_size
    variants = record.variants
    rows = []
    for name, entry in variants.items():
        if name == "checkpoint":
            continue
        latency = entry["latency_ms"]["2_threads"]
        rows.append(f"| `{entry['file']}` | {entry['bytes'] / 1e6:.1f} MB | {entry['AP']:.3f} | {latency:.1f} ms |")
    labels = ", ".join(f"{i}: `{label}`" for i, label in enumerate(record.labels))
    nms = record.nms
    return f"""# Using the detector in an Android app

## Which file

| file | size | mAP@0.5:0.95 | CPU latency (2 threads, x86 build machine) |
| --- | --- | --- | --- |
{chr(10).join(rows)}

- `model_int8.tflite`: full-integer, uint8 input. Smallest and fastest on phone CPUs and
  the one to ship unless a number above says otherwise.
- `model_fp16.tflite`: float16 weights; the natural choice for the GPU delegate.
- `model.tflite`: float32 reference.

Every file carries TFLite metadata (labels, input normalisation, output names), so
MediaPipe Tasks and the TFLite Task Library load it with no extra code or files.

## Kotlin, with MediaPipe Tasks

```kotlin
// build.gradle.kts: implementation("com.google.mediapipe:tasks-vision:<current release>")
// Put model_int8.tflite in app/src/main/assets/.
import com.google.mediapipe.framework.image.BitmapImageBuilder
import com.google.mediapipe.tasks.core.BaseOptions
import com.google.mediapipe.tasks.vision.core.RunningMode
import com.google.mediapipe.tasks.vision.objectdetector.ObjectDetector

val options = ObjectDetector.ObjectDetectorOptions.builder()
    .setBaseOptions(BaseOptions.builder().setModelAssetPath("model_int8.tflite").build())
    .setRunningMode(RunningMode.IMAGE)
    .setScoreThreshold(0.5f)          // drop weak detections
    .setMaxResults(20)
    .setCategoryAllowlist(listOf("caries"))  // optional: keep only some labels
    .build()
val detector = ObjectDetector.createFromOptions(context, options)

val result = detector.detect(BitmapImageBuilder(bitmap).build())
for (detection in result.detections()) {{
    val box = detection.boundingBox()          // RectF, in the bitmap's pixels
    for (category in detection.categories()) {{  // one box may carry several labels
        Log.d("odlite", "${{category.categoryName()}} ${{category.score()}} $box")
    }}
}}
detector.close()
```

MediaPipe resizes the bitmap to {size}x{size} (stretching it, as training did) and
maps the boxes back to the bitmap's pixels. Rotate the bitmap upright first (EXIF).
A box that sticks out past the left or top edge comes back moved inside, its width and
height kept (at most the bitmap's), not cut: the model's -8..39 is reported as 0..47.

## The raw model, for other runtimes

- Input: one {size}x{size} RGB image, pixels 0-255 as they are: float32 for
  `model.tflite` and `model_fp16.tflite`, uint8 for `model_int8.tflite`. The model
  normalises inside; the metadata says mean 0, std 1.
- Outputs, in this order, from `TFLite_Detection_PostProcess`:
  1. boxes `[1, N, 4]`: ymin, xmin, ymax, xmax, normalised to 0-1;
  2. classes `[1, N]`: class index, line of `labelmap.txt` ({labels});
  3. scores `[1, N]`: 0-1, highest first;
  4. count `[1]`: how many of the N rows are valid.
- NMS inside the model: {"per class" if nms["per_class"] else "class-agnostic"}, IoU {nms["iou_threshold"]},
  scores below {nms["score_threshold"]} dropped, at most {nms["max_detections"]} boxes.
"""


def package(export_dir: str | Path, out: str | Path | None = None) -> Path:
    export_dir = Path(export_dir)
    out = Path(out) if out else export_dir.with_name(export_dir.name + ".tar.gz")
    refuse_overlap(out, [("export folder", export_dir)])  # an archive inside would pack itself, or replace a model
    record = ExportRecord.read(export_dir)
    if not record.tflite_files:
        raise OdliteError.at(
            export_dir,
            f"no TFLite model in this export (a {record.meta_architecture} SavedModel for servers); "
            "the Android package is for SSD exports",
        )
    with tempfile.TemporaryDirectory() as folder, atomic_file(out) as staged:
        guide = Path(folder) / "ANDROID.md"
        guide.write_text(android_guide(record))
        with tarfile.open(staged, "w:gz") as archive:
            for name in PACKED:
                if (export_dir / name).exists():
                    archive.add(export_dir / name, arcname=f"{export_dir.name}/{name}")
            archive.add(guide, arcname=f"{export_dir.name}/ANDROID.md")
    return out
