"""Shared fixtures: tiny configs and models that run in milliseconds on a CPU."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from lib.config.hiptrack import load_config, resolve_experiment_config


def load_script(path: Path):
    """A tracking/ script as a module (tracking/ is not a package), without running its main."""
    spec = importlib.util.spec_from_file_location(f"script_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def _dataset_index_cache(tmp_path_factory):
    """Dataset indexes (lib/dataset/check.py) go to a temporary folder, not the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HIPTRACK_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture
def tiny_cfg():
    """Frozen tiny config (vit_tiny_test_ce, template 64, search 128)."""
    return load_config(resolve_experiment_config("hiptrack_tiny"))


def make_tiny_cfg(*opts: str):
    """Tiny config with ``KEY=VALUE`` overrides."""
    return load_config(resolve_experiment_config("hiptrack_tiny"), opts=list(opts))
