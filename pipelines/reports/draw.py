"""Boxes drawn on pictures, the same way for inspect, the eval report and detect."""

from __future__ import annotations

from PIL import Image, ImageDraw

from pipelines.data.images import DEFAULT_MAX_PIXELS, open_image

PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]


def draw_boxes(
    jpeg: bytes, boxes, labels: list[str], class_ids, colours=PALETTE, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """The image with each normalised (ymin, xmin, ymax, xmax) box outlined and labelled; raises ImageProblem
    (ImageTooLarge past ``max_pixels``)."""
    return draw_on(open_image(jpeg, max_pixels).convert("RGB"), boxes, labels, class_ids, colours)


def draw_on(image: Image.Image, boxes, labels: list[str], class_ids, colours=PALETTE) -> Image.Image:
    """``image`` itself, with each normalised (ymin, xmin, ymax, xmax) box outlined and labelled."""
    draw = ImageDraw.Draw(image)
    w, h = image.size
    width = max(2, round(min(w, h) / 200))
    for (ymin, xmin, ymax, xmax), label, class_id in zip(boxes, labels, class_ids):
        colour = colours[int(class_id) % len(colours)]
        xy = (xmin * w, ymin * h, xmax * w, ymax * h)
        draw.rectangle(xy, outline=colour, width=width)
        left, top, right, bottom = draw.textbbox((xy[0], xy[1]), label)
        top_y = max(0, xy[1] - (bottom - top) - 2)
        draw.rectangle((left, top_y, right + 2, top_y + bottom - top + 2), fill=colour)
        draw.text((left + 1, top_y), label, fill=(255, 255, 255))
    return image
