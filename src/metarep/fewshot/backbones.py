"""Convolutional backbones for few-shot classification, each returned as ``(features, head)`` for
:class:`~metarep.learner.MetaLearner`.

- :func:`conv4`: the usual four blocks of ``conv3×3(64) → BatchNorm → ReLU → maxpool2`` (Vinyals et al.
  2016; MAML, ProtoNets): 64 features for 28×28 Omniglot, 64·5·5 = 1600 for 84×84 mini-ImageNet.
- :func:`conv_net`: a smaller net without normalisation, ``conv3×3 → ReLU → maxpool2`` blocks until
  the side is below 4 (two blocks for 8×8 digits).

Batch normalisation uses the statistics of the batch it sees (``track_running_stats=False``), at test
time too, as in MAML's code: the statistics are per episode and per support/query set, and ``vmap``
over tasks cannot update running statistics anyway (:func:`metarep.network.check_vmappable`).
"""

from __future__ import annotations

import torch
from torch import nn

BACKBONES = ("small", "conv4")


def _side(image_size: int | tuple[int, int]) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else (int(image_size[0]), int(image_size[1]))


def conv4(
    ways: int,
    in_channels: int = 1,
    image_size: int | tuple[int, int] = 28,
    channels: int = 64,
    blocks: int = 4,
    seed: int | None = None,
) -> tuple[nn.Sequential, nn.Linear]:
    """The four-block CNN: ``blocks × [conv3×3(channels, padding 1) → BatchNorm2d → ReLU → maxpool2]``,
    flattened, and ``nn.Linear(features, ways)``.

    Input ``(n, in_channels, H, W)`` -> features ``(n, channels · h · w)``, where each block halves the
    side (rounding down); once a side is 1 the pooling is skipped, so small images (8×8 digits) still
    pass four blocks. BatchNorm keeps no running statistics (see the module docstring).
    """
    if seed is not None:
        torch.manual_seed(seed)
    h, w = _side(image_size)
    if h < 1 or w < 1 or blocks < 1 or channels < 1:
        raise ValueError(f"conv4: image_size, blocks and channels must be >= 1, got {image_size}, {blocks}, {channels}")
    mods: list[nn.Module] = []
    c = in_channels
    for _ in range(blocks):
        mods += [
            nn.Conv2d(c, channels, 3, padding=1),
            nn.BatchNorm2d(channels, track_running_stats=False),
            nn.ReLU(),
        ]
        if min(h, w) >= 2:
            mods.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        c = channels
    mods.append(nn.Flatten())
    return nn.Sequential(*mods), nn.Linear(channels * h * w, ways)


def conv_net(
    ways: int, in_channels: int = 1, image_size: int | tuple[int, int] = 8, channels: int = 32, seed: int | None = None
) -> tuple[nn.Sequential, nn.Linear]:
    """Small CNN: blocks of ``conv3×3(channels) → ReLU → maxpool2`` until the side is below 4, then a linear head.

    Two blocks for 8×8 digits (features of size ``channels · 2 · 2``), three for 28×28. No batch
    normalisation.
    """
    if seed is not None:
        torch.manual_seed(seed)
    h, w = _side(image_size)
    mods: list[nn.Module] = []
    c = in_channels
    while min(h, w) >= 4 or not mods:
        mods += [nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        c, h, w = channels, h // 2, w // 2
    mods.append(nn.Flatten())
    return nn.Sequential(*mods), nn.Linear(channels * h * w, ways)


def backbone(
    name: str, ways: int, in_channels: int, image_size: int | tuple[int, int], channels: int, seed: int | None = None
) -> tuple[nn.Sequential, nn.Linear]:
    """The backbone called ``name`` (one of :data:`BACKBONES`)."""
    if name == "conv4":
        return conv4(ways, in_channels, image_size, channels, seed=seed)
    if name == "small":
        return conv_net(ways, in_channels, image_size, channels, seed=seed)
    raise ValueError(f"--backbone: must be one of {', '.join(BACKBONES)}, got {name!r}")
