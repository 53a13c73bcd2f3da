"""HIPTrack defaults, loading, validation and experiment lookup."""
from lib.config.hiptrack.config import (
    EXPERIMENTS_DIR,
    LEGACY_KEYS,
    config_from_dict,
    get_default_config,
    load_config,
    resolve_experiment_config,
    validate_config,
)

__all__ = [
    "EXPERIMENTS_DIR",
    "LEGACY_KEYS",
    "config_from_dict",
    "get_default_config",
    "load_config",
    "resolve_experiment_config",
    "validate_config",
]
