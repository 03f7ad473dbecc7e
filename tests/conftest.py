import pytest
import torch

from metarep.config import load_config


@pytest.fixture
def make_cfg():
    """Config from ``section.key=value`` overrides on top of the defaults."""

    def make(*overrides: str):
        return load_config(None, list(overrides))

    return make


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
