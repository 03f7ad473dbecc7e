"""Summaries over tasks: the mean with its standard error, or with a normal 95% interval."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def mean_se(x: torch.Tensor) -> tuple[float, float]:
    """Mean of ``x`` and its standard error ``sd / √n`` (``nan`` for one value)."""
    n = x.numel()
    mean = float(x.mean())
    se = float(x.std(unbiased=True) / math.sqrt(n)) if n > 1 else math.nan
    return mean, se


def mean_ci(x: torch.Tensor | Sequence[float], z: float = 1.96) -> tuple[float, float]:
    """Mean and half-width of its normal-approximation 95% confidence interval, ``z · sd / √n``."""
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    n = x.numel()
    if n == 0:
        return float("nan"), float("nan")
    sd = float(x.std(unbiased=True)) if n > 1 else float("nan")
    return float(x.mean()), z * sd / math.sqrt(n)
