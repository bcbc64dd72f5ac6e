"""Image folders written at test time: scikit-learn's digits saved as PNG files (torchvision's ImageFolder layout),
so that the folder path decodes real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_digits_folder(root: Path, *, copies: int = 1, size: int = 8, per_class: int | None = None) -> np.ndarray:
    """``root/<digit>/<n>.png`` for the digits (``per_class`` of each, all by default), each written ``copies``
    times (8-bit grey, scaled to 0..255 and resized to ``size`` pixels). Returns the images as the folder holds
    them, (N, 1, size, size) float32 in [0, 1], in no particular order."""
    from PIL import Image
    from sklearn import datasets

    digits = datasets.load_digits()
    written = []
    counts: dict[int, int] = {}
    for image, label in zip(digits.images, digits.target, strict=True):
        label = int(label)
        if per_class is not None and counts.get(label, 0) >= per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        pixels = Image.fromarray(np.round(image * 255 / 16).astype(np.uint8), mode="L")
        if size != 8:
            pixels = pixels.resize((size, size), Image.Resampling.NEAREST)
        folder = root / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for copy in range(copies):
            pixels.save(folder / f"{counts[label]:05d}-{copy}.png")
        written += [np.asarray(pixels, dtype=np.float32)[None] / 255] * copies
    return np.stack(written)
