"""The detectors' networks: SSD and Faster R-CNN, their anchors and warm starts."""
