"""Labelled image sets for few-shot classification, and N-way K-shot episodes drawn from them.

- :func:`load_digits`: scikit-learn's bundled 8×8 handwritten digits (1797 images, no download).
- :func:`load_image_folder`: an Omniglot-style folder the user points to, one folder per class
  (``root/Alphabet/character01/*.png`` or ``root/class/*.png``: any folder holding images is a class).
- :func:`rotate_classes`: the usual class augmentation of Omniglot (each 90° rotation a new class).
- :meth:`ClassImages.from_tensors` / :meth:`ClassImages.from_dataset`: any labelled tensors or
  ``(x, label)`` dataset (a ``torch.utils.data.Dataset``, torchvision's ``ImageFolder``, ...), labels
  remapped to ``0..C-1``.

Episodes are drawn from them by :class:`metarep.fewshot.episodes.EpisodeSampler`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ClassImages:
    """Samples with integer class labels (images, or any tensors with a leading sample axis).

    ``images (N, *shape)``, for images ``(N, channels, H, W)`` float32 in [0, 1]; ``labels (N,)`` long
    in ``[0, num_classes)``; ``class_names``: one name per label.
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

    @classmethod
    def from_tensors(
        cls, samples: torch.Tensor, labels: torch.Tensor | Sequence, class_names: Sequence[str] | None = None
    ) -> ClassImages:
        """Any labelled tensors: ``samples (N, *shape)`` and ``labels`` (``N`` integers or strings, in any
        numbering). Labels are remapped to ``0..C-1`` in sorted order of the distinct labels, which name
        the classes unless ``class_names`` (one per distinct label, in that order) is given."""
        if not isinstance(samples, torch.Tensor) or samples.ndim < 1:
            raise ValueError("samples: must be a tensor with a leading sample axis")
        raw = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
        if len(raw) != samples.shape[0]:
            raise ValueError(f"labels: {len(raw)} labels for {samples.shape[0]} samples")
        distinct = sorted(set(raw))
        if class_names is not None and len(class_names) != len(distinct):
            raise ValueError(f"class_names: {len(class_names)} names for {len(distinct)} distinct labels")
        index = {lab: i for i, lab in enumerate(distinct)}
        names = tuple(class_names) if class_names is not None else tuple(str(lab) for lab in distinct)
        return cls(samples, torch.tensor([index[lab] for lab in raw], dtype=torch.long), names)

    @classmethod
    def from_dataset(cls, dataset: Iterable, class_names: Sequence[str] | None = None) -> ClassImages:
        """A dataset of ``(sample, label)`` pairs (e.g. ``torch.utils.data.TensorDataset`` or torchvision's
        ``ImageFolder`` with ``transform=ToTensor()``), stacked into memory; labels as in :meth:`from_tensors`."""
        xs, ys = [], []
        for item in dataset:
            x, y = item[0], item[1]
            xs.append(torch.as_tensor(x))
            ys.append(y.item() if isinstance(y, torch.Tensor) else y)
        if not xs:
            raise ValueError("dataset: is empty")
        return cls.from_tensors(torch.stack(xs), ys, class_names)

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
    root: str | Path,
    size: int | tuple[int, int] = 28,
    *,
    invert: bool = False,
    min_images: int = 1,
    color: bool = False,
) -> ClassImages:
    """Load an Omniglot-style folder: every folder under ``root`` that holds image files is a class.

    **Arguments:**

    - ``root``: the folder; classes are named by their path relative to it (``Alphabet/character01``).
    - ``size``: images are converted to grayscale and resized to ``size × size`` (or ``(H, W)``).
    - ``invert``: use ``1 − pixel`` (Omniglot draws black strokes on white; networks prefer strokes as 1).
    - ``min_images``: classes with fewer images are skipped.
    - ``color``: keep three RGB channels (mini-ImageNet) instead of converting to grayscale.

    Returns :class:`ClassImages` with ``images (N, 1 or 3, H, W)`` in [0, 1], classes in sorted path order.
    Raises ``ValueError`` naming the problem (no such folder, no classes, an unreadable file).
    """
    return read_image_classes(scan_image_folder(root, min_images), size, invert=invert, color=color)


def scan_image_folder(root: str | Path, min_images: int = 1) -> dict[str, list[Path]]:
    """The classes of an Omniglot-style folder and their image files, none opened: ``{class name: paths}``
    in sorted order, classes with fewer than ``min_images`` images left out (see :func:`load_image_folder`).
    Raises ``ValueError`` when ``root`` is not a folder or holds no class with enough images."""
    root = Path(root)
    try:
        is_dir = root.is_dir()
    except OSError as e:  # a name too long, ...
        raise ValueError(f"image folder: cannot read {root}: {e.strerror or e}") from None
    if not is_dir:
        raise ValueError(f"image folder: {root} is not a folder")
    by_class: dict[str, list[Path]] = {}
    for p in _image_files(root):
        by_class.setdefault(p.parent.relative_to(root).as_posix(), []).append(p)
    by_class = {c: ps for c, ps in sorted(by_class.items()) if len(ps) >= max(min_images, 1)}
    if not by_class:
        raise ValueError(
            f"image folder: no class folders with at least {max(min_images, 1)} images "
            f"({', '.join(IMAGE_SUFFIXES)}) under {root}"
        )
    return by_class


def read_image_classes(
    by_class: dict[str, list[Path]], size: int | tuple[int, int] = 28, *, invert: bool = False, color: bool = False
) -> ClassImages:
    """Decode the images of :func:`scan_image_folder`'s classes (as :func:`load_image_folder` describes);
    :class:`~metarep.limits.LimitError` (a ``ValueError`` naming ``--size``) before any is decoded when
    they would not fit in memory."""
    from .. import limits

    h, w = (size, size) if isinstance(size, int) else size
    if h < 1 or w < 1:
        raise ValueError(f"size: must be >= 1, got {size!r}")
    limits.check_images(sum(len(ps) for ps in by_class.values()), h, w, 3 if color else 1)
    images, labels = [], []
    for label, (_name, paths) in enumerate(sorted(by_class.items())):
        for p in paths:
            arr = _read_image(p, h, w, color)
            images.append(1.0 - arr if invert else arr)
            labels.append(label)
    stacked = torch.from_numpy(np.stack(images))
    stacked = stacked.permute(0, 3, 1, 2).contiguous() if color else stacked[:, None]
    return ClassImages(stacked, torch.tensor(labels), tuple(sorted(by_class)))


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


def _read_image(p: Path, h: int, w: int, color: bool = False) -> np.ndarray:
    """One image as grayscale ``(h, w)`` (``color``: RGB ``(h, w, 3)``) float32 in [0, 1]; ``ValueError``
    naming an unreadable file or a decompression bomb (more pixels than PIL's ``Image.MAX_IMAGE_PIXELS``)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                return (
                    np.asarray(im.convert("RGB" if color else "L").resize((w, h), Image.BILINEAR), dtype=np.float32)
                    / 255.0
                )
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ValueError(
            f"image folder: {p} is too large to decode safely (more than {Image.MAX_IMAGE_PIXELS} pixels: "
            f"a possible decompression bomb): {str(e).splitlines()[0]}"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(
            f"image folder: cannot read {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
