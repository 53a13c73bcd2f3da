"""Shared fixtures: tiny configs and models that run in milliseconds on a CPU."""
from __future__ import annotations

import pytest
import torch

from lib.config.hiptrack import load_config, resolve_experiment_config

torch.set_num_threads(2)


@pytest.fixture
def tiny_cfg():
    """Frozen tiny config (vit_tiny_test_ce, template 64, search 128)."""
    return load_config(resolve_experiment_config("hiptrack_tiny"))


def make_tiny_cfg(*opts: str):
    """Tiny config with ``KEY=VALUE`` overrides."""
    return load_config(resolve_experiment_config("hiptrack_tiny"), opts=list(opts))
