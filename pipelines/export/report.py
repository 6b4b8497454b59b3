"""The export report as people read it: the table of variants odlite export prints and report.md."""

from __future__ import annotations

from tabulate import tabulate

from pipelines.artifacts import ExportRecord


def report_table(record: ExportRecord) -> list[list]:
    reference = record.variants["checkpoint"]
    rows = [["checkpoint", "", f"{reference['AP']:.3f}", f"{reference['AP50']:.3f}", "", "", ""]]
    for variant, entry in record.variants.items():
        if variant == "checkpoint":
            continue
        check = entry.get("mediapipe")
        checked = "not run" if check is None else ("pass" if check["passed"] else "FAIL")
        latency = entry.get("latency_ms")  # TFLite models only
        rows.append(
            [
                entry["file"],
                f"{entry['bytes'] / 1e6:.1f} MB" if "bytes" in entry else "",
                f"{entry['AP']:.3f} ({100 * (entry['AP'] - reference['AP']):+.1f})",
                f"{entry['AP50']:.3f}",
                f"{latency['1_threads']:.1f}" if latency else "",
                f"{latency['2_threads']:.1f}" if latency else "",
                checked if latency else "",
            ]
        )
    return rows


REPORT_HEADERS = [
    "model",
    "size",
    "mAP@0.5:0.95 (points vs ckpt)",
    "mAP@0.5",
    "ms 1 thread",
    "ms 2 threads",
    "MediaPipe",
]


def report_markdown(record: ExportRecord) -> str:
    nms = record.nms
    lines = [
        f"# Export of step {record.step}",
        "",
        f"Checkpoint `{record.checkpoint}`; input {record.input_size}x{record.input_size} RGB, 0-255.",
        f"Labels (class index 0, 1, ...): {', '.join(record.labels)}.",
        f"NMS (checkpoint and TFLite alike): {'per class' if nms['per_class'] else 'class-agnostic'}, "
        f"IoU {nms['iou_threshold']}, score >= {nms['score_threshold']}, at most {nms['max_detections']} boxes.",
        "",
        tabulate(report_table(record), headers=REPORT_HEADERS, tablefmt="github"),
        "",
        "mAP by pycocotools on the validation records named in pipeline.config. Latency: median of 50 "
        "LiteRT invokes after warm-up on the first validation image, on this machine. MediaPipe: Tasks "
        "ObjectDetector on validation images agrees with odlite's runner (same labels, boxes within 1% of "
        "the image, scores within 0.02).",
        f"The int8 model was calibrated on {record.calibration_images} training images.",
        "Per-variant evaluation reports: `eval/<model>/report.md`.",
    ]
    return "\n".join(lines) + "\n"
