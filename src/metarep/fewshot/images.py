"""Labelled image sets for few-shot classification, and N-way K-shot episodes drawn from them.

- :func:`load_digits`: scikit-learn's bundled 8×8 handwritten digits (1797 images, no download).
- :func:`load_image_folder`: an Omniglot-style folder the user points to, one folder per class
  (``root/Alphabet/character01/*.png`` or ``root/class/*.png``: any folder holding images is a class).
- :func:`rotate_classes`: the usual class augmentation of Omniglot (each 90° rotation a new class).
- :class:`EpisodeSampler`: episodes with a leading task axis, sampled without a loop over tasks.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..batch import TaskBatch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ClassImages:
    """Images with integer class labels.

    ``images (N, channels, H, W)`` float32 in [0, 1]; ``labels (N,)`` long in ``[0, num_classes)``;
    ``class_names``: one name per label.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> torch.Tensor:
        """Images per class, ``(num_classes,)``."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def subset(self, classes: Sequence[int]) -> ClassImages:
        """The images of ``classes`` only, relabelled ``0..len(classes)-1`` in the given order."""
        classes = [int(c) for c in classes]
        remap = torch.full((self.num_classes,), -1, dtype=torch.long)
        remap[torch.tensor(classes, dtype=torch.long)] = torch.arange(len(classes))
        keep = remap[self.labels] >= 0
        return ClassImages(self.images[keep], remap[self.labels[keep]], tuple(self.class_names[c] for c in classes))


def load_digits() -> ClassImages:
    """scikit-learn's 8×8 digits: 1797 images ``(1, 8, 8)`` scaled to [0, 1], classes ``"0"``..``"9"``."""
    from sklearn.datasets import load_digits as _load

    d = _load()
    images = torch.tensor(d.images / 16.0, dtype=torch.float32)[:, None]
    return ClassImages(images, torch.tensor(d.target, dtype=torch.long), tuple(str(c) for c in range(10)))


def rotate_classes(data: ClassImages, rotations: int) -> ClassImages:
    """Each class in ``rotations`` (1–4) versions rotated by multiples of 90°, each a new class.

    Class ``c`` rotated ``r`` times becomes class ``c * rotations + r``, named ``"name@{90r}"``.
    """
    if rotations not in (1, 2, 3, 4):
        raise ValueError(f"rotations: must be 1, 2, 3 or 4, got {rotations!r}")
    if rotations == 1:
        return data
    imgs = torch.cat([torch.rot90(data.images, r, dims=(-2, -1)) for r in range(rotations)])
    labels = torch.cat([data.labels * rotations + r for r in range(rotations)])
    names = tuple(f"{n}@{90 * r}" if r else n for n in data.class_names for r in range(rotations))
    return ClassImages(imgs, labels, names)


def load_image_folder(
    root: str | Path, size: int | tuple[int, int] = 28, *, invert: bool = False, min_images: int = 1
) -> ClassImages:
    """Load an Omniglot-style folder: every folder under ``root`` that holds image files is a class.

    **Arguments:**

    - ``root``: the folder; classes are named by their path relative to it (``Alphabet/character01``).
    - ``size``: images are converted to grayscale and resized to ``size × size`` (or ``(H, W)``).
    - ``invert``: use ``1 − pixel`` (Omniglot draws black strokes on white; networks prefer strokes as 1).
    - ``min_images``: classes with fewer images are skipped.

    Returns :class:`ClassImages` with ``images (N, 1, H, W)`` in [0, 1], classes in sorted path order.
    Raises ``ValueError`` naming the problem (no such folder, no classes, an unreadable file).
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image folder: {root} is not a folder")
    h, w = (size, size) if isinstance(size, int) else size
    if h < 1 or w < 1:
        raise ValueError(f"size: must be >= 1, got {size!r}")
    by_class: dict[str, list[Path]] = {}
    for p in _image_files(root):
        by_class.setdefault(p.parent.relative_to(root).as_posix(), []).append(p)
    by_class = {c: ps for c, ps in by_class.items() if len(ps) >= max(min_images, 1)}
    if not by_class:
        raise ValueError(
            f"image folder: no class folders with at least {max(min_images, 1)} images "
            f"({', '.join(IMAGE_SUFFIXES)}) under {root}"
        )
    images, labels = [], []
    for label, (_name, paths) in enumerate(sorted(by_class.items())):
        for p in paths:
            arr = _read_image(p, h, w)
            images.append(1.0 - arr if invert else arr)
            labels.append(label)
    return ClassImages(torch.from_numpy(np.stack(images))[:, None], torch.tensor(labels), tuple(sorted(by_class)))


def _image_files(root: Path) -> list[Path]:
    """Image files under ``root`` (hidden names skipped), sorted; ``ValueError`` naming a symbolic link
    that leads out of ``root`` (links are refused rather than followed out of the folder)."""
    top = root.resolve()
    found = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in [*dirs, *files]:
            p = Path(folder) / name
            if p.is_symlink() and not p.resolve().is_relative_to(top):
                raise ValueError(
                    f"image folder: {p} is a symbolic link to {p.resolve()}, outside {root}; "
                    "links out of the folder are refused (copy the files in instead)"
                )
        found += [Path(folder) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(p for p in found if p.is_file())


def _read_image(p: Path, h: int, w: int) -> np.ndarray:
    """One image as grayscale ``(h, w)`` float32 in [0, 1]; ``ValueError`` naming an unreadable file or a
    decompression bomb (more pixels than PIL's ``Image.MAX_IMAGE_PIXELS``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                return np.asarray(im.convert("L").resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(
            f"image folder: {p} is too large to decode safely (more than {Image.MAX_IMAGE_PIXELS} pixels: "
            f"a possible decompression bomb): {str(e).splitlines()[0]}"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(
            f"image folder: cannot read {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None


class EpisodeSampler:
    """N-way K-shot episodes from :class:`ClassImages`, with a leading task axis.

    Each episode picks ``ways`` distinct classes in random order (the order is the label, so labels
    are a fresh random permutation every episode), then ``shots + queries`` distinct images of each.

    ``sample(T)`` returns a :class:`TaskBatch`: ``X_in (T, ways*shots, C, H, W)``, ``y_in (T, ways*shots)``
    (long), ``X_out (T, ways*queries, C, H, W)``, ``y_out (T, ways*queries)``.
    """

    def __init__(self, data: ClassImages, ways: int, shots: int, queries: int, generator: torch.Generator):
        if ways < 2 or ways > data.num_classes:
            raise ValueError(f"ways: must be between 2 and the number of classes ({data.num_classes}), got {ways}")
        if shots < 1 or queries < 1:
            raise ValueError(f"shots and queries: must be >= 1, got {shots} and {queries}")
        counts = data.counts()
        if int(counts.min()) < shots + queries:
            c = int(counts.argmin())
            raise ValueError(
                f"shots + queries: {shots} + {queries} images per class are needed, but class "
                f"{data.class_names[c]!r} has {int(counts[c])}"
            )
        self.data, self.ways, self.shots, self.queries, self.generator = data, ways, shots, queries, generator
        order = torch.argsort(data.labels, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        # (C, max_count) table of image indices per class, padded with index 0 (never drawn)
        col = torch.arange(int(counts.max()))
        self._table = order[(starts[:, None] + col).clamp(max=len(order) - 1)]
        self._valid = col[None, :] < counts[:, None]

    def sample(self, num_tasks: int) -> TaskBatch:
        g, C, n = self.generator, self.data.num_classes, self.shots + self.queries
        classes = torch.rand(num_tasks, C, generator=g).argsort(1)[:, : self.ways]  # (T, ways)
        keys = torch.rand(num_tasks, self.ways, self._table.shape[1], generator=g)
        keys = keys.masked_fill(~self._valid[classes], 2.0)  # padding last
        pick = keys.argsort(-1)[..., :n]  # (T, ways, n)
        idx = torch.gather(self._table[classes], 2, pick)
        X = self.data.images[idx]  # (T, ways, n, C, H, W)
        y = torch.arange(self.ways).view(1, -1, 1).expand(num_tasks, self.ways, n)
        split = lambda t, a, b: t[:, :, a:b].reshape(num_tasks, self.ways * (b - a), *t.shape[3:])  # noqa: E731
        return TaskBatch(
            split(X, 0, self.shots), split(y, 0, self.shots), split(X, self.shots, n), split(y, self.shots, n)
        )

    def batches(self, meta_batch: int) -> Iterator[TaskBatch]:
        """An endless stream of batches of ``meta_batch`` episodes."""
        while True:
            yield self.sample(meta_batch)
