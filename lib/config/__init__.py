"""Configuration: typed, commented config nodes (``node``) and per-tracker defaults."""
from lib.config.node import (
    CfgNode,
    ConfigError,
    FrozenConfigError,
    Key,
    describe,
    merge_dict,
    merge_opts,
    merge_yaml,
)

__all__ = [
    "CfgNode",
    "ConfigError",
    "FrozenConfigError",
    "Key",
    "describe",
    "merge_dict",
    "merge_opts",
    "merge_yaml",
]
