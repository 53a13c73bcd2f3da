"""Typed, documented configuration nodes with strict YAML and command-line merging.

Defaults are declared once as a nested schema: a mapping from UPPER_CASE names to either a
:class:`Key` (default value, one-line comment, optional choices) or a nested mapping (a
section). :class:`CfgNode` holds the values built from that schema and offers attribute and
item access. ``merge_yaml`` / ``merge_opts`` / ``merge_dict`` apply overrides with the checks
detectron2 users expect: unknown keys are rejected with the closest valid key, values are
type-checked against the default's type (``"1e-4"`` is a float), and legacy keys are either
ignored with a warning or rejected with a migration message.
"""
from __future__ import annotations

import copy
import difflib
import logging
import os
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Union

import yaml

from lib.utils.atomic import atomic_write_text
from lib.utils.cli import InputError

logger = logging.getLogger(__name__)

__all__ = [
    "CfgNode",
    "ConfigError",
    "FrozenConfigError",
    "config_error",
    "Key",
    "LegacyKey",
    "check_values",
    "describe",
    "iter_leaves",
    "load_yaml_mapping",
    "merge_dict",
    "merge_opts",
    "merge_yaml",
]

_SCALAR_TYPES = (bool, int, float, str)


class ConfigError(ValueError, InputError):
    """A config file, command-line option or config value is invalid.

    ``problems`` lists every problem found (one line each); the message is the single problem, or
    all of them under a count (:func:`config_error`).
    """

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]


def config_error(problems: Sequence[str]) -> ConfigError:
    """One :class:`ConfigError` reporting every problem of ``problems`` (at least one)."""
    if len(problems) == 1:
        return ConfigError(problems[0])
    return ConfigError(f"{len(problems)} config errors:\n  - " + "\n  - ".join(problems), problems)


class FrozenConfigError(AttributeError):
    """Assignment to a frozen :class:`CfgNode`."""


@dataclass(frozen=True)
class Key:
    """Declaration of one config key: its default, a one-line comment and optional choices.

    The type of ``default`` is the key's type (``bool``, ``int``, ``float``, ``str`` or
    ``list``). A list's element type is taken from its default elements, or from
    ``elem_type`` when the default list is empty. ``deprecated_values`` maps values that older
    configs hold (of another type, e.g. ``True`` of a key that became an enum) to today's value;
    they are read with a deprecation warning.
    """

    default: Any
    comment: str
    choices: tuple | None = None
    elem_type: type | None = None
    deprecated_values: tuple[tuple[Any, Any], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.comment, str) or not self.comment.strip():
            raise TypeError(f"Key({self.default!r}): a non-empty one-line comment is required")
        if type(self.default) not in (*_SCALAR_TYPES, list):
            kind = type(self.default).__name__
            raise TypeError(f"Key({self.default!r}): unsupported default type {kind}")
        if isinstance(self.default, list):
            object.__setattr__(self, "elem_type", self._list_elem_type())
        elif self.elem_type is not None:
            raise TypeError(f"Key({self.default!r}): elem_type is only valid for list defaults")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
            if self.default not in self.choices:
                raise TypeError(f"Key({self.default!r}): default is not one of {list(self.choices)}")
        object.__setattr__(self, "deprecated_values", tuple(dict(self.deprecated_values).items()))
        for _, new in self.deprecated_values:
            if type(new) is not self.type or (self.choices is not None and new not in self.choices):
                raise TypeError(f"Key({self.default!r}): deprecated value maps to {new!r}, not a valid value")

    def replace_deprecated(self, value: Any) -> tuple[Any, bool]:
        """``(today's value, True)`` for a deprecated value (same type and value), else ``(value, False)``."""
        for old, new in self.deprecated_values:
            if type(value) is type(old) and value == old:
                return new, True
        return value, False

    def _list_elem_type(self) -> type:
        """Element type of a list key: declared, else inferred from the default elements."""
        elem_type = self.elem_type
        if elem_type is None and self.default:
            elem_type = float if any(type(v) is float for v in self.default) else type(self.default[0])
        if elem_type not in _SCALAR_TYPES:
            raise TypeError(f"Key({self.default!r}): list keys need a scalar elem_type, "
                            f"got {elem_type!r}")
        for value in self.default:
            _coerce_scalar(value, elem_type, f"Key({self.default!r}) default element")
        return elem_type

    @property
    def type(self) -> type:
        """The Python type values of this key have after merging."""
        return type(self.default)

    @property
    def type_name(self) -> str:
        """Human-readable type, e.g. ``int`` or ``list[float]``."""
        if self.type is list:
            return f"list[{self.elem_type.__name__}]"
        return self.type.__name__


Schema = Mapping[str, Union[Key, "Schema"]]


@dataclass(frozen=True)
class LegacyKey:
    """A key that older configs may hold but the schema no longer has, and what merging does with it.

    Actions: ``ignore`` (dropped with a warning), ``error`` (refused), ``fixed`` (the key had one
    legal value, ``value``: that value is dropped with a note, any other is refused) and ``renamed``
    (the value moves to ``new_key``, through ``convert`` when given, with a deprecation warning).
    """
    action: str
    message: str
    value: Any = None
    new_key: str | None = None
    convert: Callable[[Any], Any] | None = None

    ACTIONS: ClassVar[tuple[str, ...]] = ("ignore", "error", "fixed", "renamed")

    def __post_init__(self) -> None:
        if self.action not in self.ACTIONS:
            raise TypeError(f"legacy key action must be one of {self.ACTIONS}, got {self.action!r}")
        if (self.action == "renamed") != (self.new_key is not None):
            raise TypeError("a renamed legacy key, and only a renamed one, names its new_key")


@dataclass(frozen=True)
class _SchemaInfo:
    """State shared by every node of one config tree (never mutated after construction)."""

    root: Schema
    legacy: Mapping[str, LegacyKey]
    dotted_keys: tuple[str, ...]
    leaf_keys: tuple[str, ...]      # the keys that hold values (dotted_keys without the sections)


class CfgNode(Mapping):
    """A nested config section with attribute and item access (``cfg.MODEL.MAX_MEM``).

    Build one from a schema (``CfgNode(schema, legacy_keys=...)``); every key starts at its
    default. Assignments are type-checked like merged values, unknown keys are rejected, and
    after :meth:`freeze` any assignment raises :class:`FrozenConfigError`.
    """

    def __init__(
        self,
        schema: Schema,
        legacy_keys: Mapping[str, LegacyKey] | None = None,
        *,
        _info: _SchemaInfo | None = None,
        _prefix: str = "",
    ) -> None:
        info = _info or _build_info(schema, legacy_keys or {})
        data: dict[str, Any] = {}
        for name, spec in schema.items():
            if isinstance(spec, Key):
                data[name] = copy.deepcopy(spec.default)
            else:
                data[name] = CfgNode(spec, _info=info, _prefix=f"{_prefix}{name}.")
        # Internal state lives in __dict__ directly so __setattr__ can treat every attribute
        # assignment as a config assignment.
        self.__dict__.update(_specs=schema, _data=data, _info=info, _prefix=_prefix, _frozen=False)

    # -- access ---------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        data = self.__dict__.get("_data")
        # Dunder lookups (copy, pickle) on a half-built instance must fail normally.
        if data is None or name.startswith("__"):
            raise AttributeError(name)
        try:
            return data[name]
        except KeyError:
            raise AttributeError(self._unknown_key_message(name)) from None

    def __getitem__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise KeyError(self._unknown_key_message(name)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self._data]

    # -- assignment -----------------------------------------------------------------------
    def __setattr__(self, name: str, value: Any) -> None:
        self._assign(name, value)

    def __setitem__(self, name: str, value: Any) -> None:
        self._assign(name, value)

    def __delattr__(self, name: str) -> None:
        raise ConfigError(f"cannot delete config key '{self._prefix}{name}'")

    def _assign(self, name: str, value: Any) -> None:
        """Set one key after checking frozenness, existence and type."""
        dotted = f"{self._prefix}{name}"
        if self._frozen:
            raise FrozenConfigError(f"cannot set '{dotted}': the config is frozen")
        spec = self._specs.get(name)
        if spec is None:
            raise ConfigError(self._unknown_key_message(name, value))
        if not isinstance(spec, Key):
            raise ConfigError(f"'{dotted}' is a section; assign its keys individually")
        self._data[name] = _coerce(value, spec, dotted, source="assignment")

    # -- helpers --------------------------------------------------------------------------
    def freeze(self) -> CfgNode:
        """Make this node and all sub-nodes read-only; returns ``self``."""
        self._set_frozen_recursive(True)
        return self

    def is_frozen(self) -> bool:
        """Whether assignments are refused."""
        return self._frozen

    def clone(self) -> CfgNode:
        """An unfrozen deep copy (derive a variant of a frozen config, then freeze it)."""
        twin = copy.deepcopy(self)
        twin._set_frozen_recursive(False)
        return twin

    def _set_frozen_recursive(self, frozen: bool) -> None:
        self.__dict__["_frozen"] = frozen
        for value in self._data.values():
            if isinstance(value, CfgNode):
                value._set_frozen_recursive(frozen)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts and lists (for checkpoints and YAML), independent of this node."""
        return {
            name: value.to_dict() if isinstance(value, CfgNode) else copy.deepcopy(value)
            for name, value in self._data.items()
        }

    def dump_yaml(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as YAML atomically (temporary file, then rename)."""
        return atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False))

    def __deepcopy__(self, memo: dict) -> CfgNode:
        twin = CfgNode.__new__(CfgNode)
        # The schema and shared info are immutable declarations: share them, copy the values.
        twin.__dict__.update(self.__dict__)
        twin.__dict__["_data"] = copy.deepcopy(self._data, memo)
        return twin

    def __repr__(self) -> str:
        return f"CfgNode({self.to_dict()!r})"

    def __str__(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def _unknown_key_message(self, name: str, value: Any = None) -> str:
        """Error text for the unknown key ``name`` of this node; a value that is not a mapping is
        meant for a leaf key, so the suggestion is a leaf key (a mapping's, a section)."""
        info = self._info
        if isinstance(value, Mapping):
            candidates = tuple(k for k in info.dotted_keys if k not in info.leaf_keys)
        elif value is None:
            candidates = info.dotted_keys
        else:
            candidates = info.leaf_keys
        siblings = [f"{self._prefix}{key}" if isinstance(spec, Key) else f"{self._prefix}{key}.*"
                    for key, spec in self._specs.items()]
        return _unknown_key_message(f"{self._prefix}{name}", candidates, siblings)


def _build_info(schema: Schema, legacy: Mapping[str, LegacyKey]) -> _SchemaInfo:
    """Check the schema and the legacy table once, and precompute every valid dotted key."""
    walked = list(_walk_schema(schema))
    dotted = tuple(name for name, _ in walked)
    for key, entry in legacy.items():
        if key in dotted:
            raise TypeError(f"legacy key '{key}' is also a valid key")
        if not isinstance(entry, LegacyKey):
            raise TypeError(f"legacy key '{key}': expected a LegacyKey, got {type(entry).__name__}")
        if entry.new_key is not None and entry.new_key not in dotted:
            raise TypeError(f"legacy key '{key}' is renamed to '{entry.new_key}', which is no valid key")
    leaves = tuple(name for name, spec in walked if isinstance(spec, Key))
    return _SchemaInfo(root=schema, legacy=dict(legacy), dotted_keys=dotted, leaf_keys=leaves)


def _walk_schema(schema: Schema, prefix: str = "") -> Iterator[tuple[str, Key | Schema]]:
    """Yield ``(dotted_name, spec)`` for every section and key, depth first, in order."""
    for name, spec in schema.items():
        if not isinstance(name, str) or not name or "." in name:
            raise TypeError(f"invalid config key name {prefix}{name!r}")
        if hasattr(CfgNode, name):  # would be shadowed by a method under attribute access
            raise TypeError(f"config key name '{prefix}{name}' clashes with a CfgNode attribute")
        if not isinstance(spec, (Key, Mapping)):
            raise TypeError(f"'{prefix}{name}': expected a Key or a nested mapping, got {spec!r}")
        yield f"{prefix}{name}", spec
        if isinstance(spec, Mapping):
            yield from _walk_schema(spec, f"{prefix}{name}.")


_MAX_LISTED_KEYS = 12  # keys of a section named when nothing is close to an unknown key


def _unknown_key_message(dotted: str, valid: Sequence[str], siblings: Sequence[str] = ()) -> str:
    """Error text for an unknown key: the closest of ``valid`` (case-insensitive), else what its
    section holds (``siblings``: keys, and sections as ``NAME.*``)."""
    by_upper = {key.upper(): key for key in valid if not dotted.startswith(f"{key}.")}  # not its own sections
    match = difflib.get_close_matches(dotted.upper(), list(by_upper), n=1)
    if match:
        hint = f"did you mean '{by_upper[match[0]]}'?"
    elif siblings:
        shown = ", ".join(siblings[:_MAX_LISTED_KEYS]) + (", ..." if len(siblings) > _MAX_LISTED_KEYS else "")
        hint = f"no similar key exists; {dotted.rpartition('.')[0] or 'the config'} holds {shown}"
    else:
        hint = "no similar key exists"
    return f"unknown config key '{dotted}' ({hint})"


# -- value checking -----------------------------------------------------------------------
def _describe_value(value: Any) -> str:
    """Short description of a value's type and content for error messages."""
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return f"a mapping {dict(value)!r}"
    return f"{type(value).__name__} {value!r}"


def _coerce_scalar(value: Any, expected: type, where: str) -> Any:
    """Return ``value`` converted to ``expected`` or raise; only lossless, unsurprising casts."""
    if expected is float and not isinstance(value, bool):
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            # PyYAML (YAML 1.1) reads 1e-4 as a string; accept any text Python parses as float.
            try:
                return float(value)
            except ValueError:
                pass
    elif expected is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif expected in (bool, str) and isinstance(value, expected):
        return value
    raise ConfigError(f"{where}: expected {expected.__name__}, got {_describe_value(value)}")


def _coerce(value: Any, key: Key, dotted: str, source: str = "") -> Any:
    """Check ``value`` against ``key`` (type, list element type, choices); return the cast value.

    Errors read ``<source>: key '<dotted>': expected <type>, got <value>``.
    """
    prefix = f"{source}: " if source else ""
    where = f"{prefix}key '{dotted}'"
    value, deprecated = key.replace_deprecated(value)
    if deprecated:
        logger.warning("%s: a deprecated value, read as %r", where, value)
    if key.type is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {key.type_name}, got {_describe_value(value)}")
        return [
            _coerce_scalar(v, key.elem_type, f"{prefix}key '{dotted}[{i}]'") for i, v in enumerate(value)
        ]
    result = _coerce_scalar(value, key.type, where)
    if key.choices is not None and result not in key.choices:
        raise ConfigError(f"{where}: {result!r} is not one of {list(key.choices)}")
    return result


def iter_leaves(cfg: CfgNode) -> Iterator[tuple[str, Any, Key]]:
    """Yield ``(dotted_key, current_value, Key)`` for every leaf key of ``cfg``, in order."""
    for name, spec in cfg._specs.items():
        value = cfg._data[name]
        if isinstance(spec, Key):
            yield f"{cfg._prefix}{name}", value, spec
        else:
            yield from iter_leaves(value)


def check_values(cfg: CfgNode) -> list[str]:
    """Re-check every value's type and choices; returns error strings (empty when valid)."""
    errors = []
    for dotted, value, key in iter_leaves(cfg):
        try:
            _coerce(value, key, dotted)
        except ConfigError as exc:
            errors.append(str(exc))
    return errors


def describe(cfg_defaults: CfgNode | Schema) -> list[tuple[str, Any, str]]:
    """``(dotted_key, default, comment)`` for every leaf key, for ``--help`` text and docs."""
    schema = cfg_defaults._info.root if isinstance(cfg_defaults, CfgNode) else cfg_defaults
    return [
        (dotted, copy.deepcopy(spec.default), spec.comment)
        for dotted, spec in _walk_schema(schema)
        if isinstance(spec, Key)
    ]


# -- merging ------------------------------------------------------------------------------
class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (plain safe_load keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # SafeConstructor reports unhashable keys itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_mapping(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping; errors name the file. An empty file (or one
    of comments only) is read as an empty mapping, with a warning: it overrides nothing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file '{path}' does not exist")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML:\n{exc}") from exc
    if data is None:
        logger.warning("config file '%s' is empty: it overrides no default", path)
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config file '{path}': the top level must be a mapping of sections, "
            f"got {_describe_value(data)}"
        )
    return dict(data)


def merge_yaml(cfg: CfgNode, path: str | os.PathLike) -> CfgNode:
    """Merge a YAML file into ``cfg`` (in place, all or nothing); returns ``cfg``."""
    return merge_dict(cfg, load_yaml_mapping(path), source=f"config file '{path}'")


def merge_dict(cfg: CfgNode, overrides: Mapping[str, Any], source: str = "overrides") -> CfgNode:
    """Merge a nested mapping into ``cfg`` (in place, all or nothing); returns ``cfg``.

    ``source`` names where the values come from (a file, an option, a checkpoint) in errors; one
    :class:`ConfigError` lists every unknown key and wrong value.
    """
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections, got {_describe_value(overrides)}")
    updates: list[tuple[CfgNode, str, Any]] = []
    problems: list[str] = []
    _collect_updates(cfg, overrides, source, updates, cfg, problems)
    _apply_updates(cfg, updates, problems)
    return cfg


def merge_opts(cfg: CfgNode, opts: Sequence[str]) -> CfgNode:
    """Merge ``KEY=VALUE`` options (values parsed as YAML) into ``cfg``; returns ``cfg``.

    ``MODEL.PRETRAIN_FILE=`` (empty text) sets an empty string, since shells drop ``""``. One
    :class:`ConfigError` lists the problems of every option.
    """
    if isinstance(opts, str):
        raise TypeError("merge_opts expects a list of 'KEY=VALUE' strings, not one string")
    updates: list[tuple[CfgNode, str, Any]] = []
    problems: list[str] = []
    for opt in opts:
        source = f"option '{opt}'"
        try:
            nested = _parse_option(opt, source)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        _collect_updates(cfg, nested, source, updates, cfg, problems)
    _apply_updates(cfg, updates, problems)
    return cfg


def _parse_option(opt: str, source: str) -> dict[str, Any]:
    """``{"MODEL": {"MAX_MEM": 3}}`` of ``"MODEL.MAX_MEM=3"`` (the value read as YAML)."""
    dotted, sep, text = opt.partition("=")
    if not sep or not dotted.strip():
        raise ConfigError(f"{source}: expected KEY=VALUE, e.g. TRAIN.LR=1e-4")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: the value is not valid YAML:\n{exc}") from exc
    nested: Any = value
    for part in reversed(dotted.strip().split(".")):
        nested = {part: nested}
    return nested


def _apply_updates(cfg: CfgNode, updates: list[tuple[CfgNode, str, Any]], problems: Sequence[str] = ()) -> None:
    """Write checked values; nothing is written if there are ``problems`` or ``cfg`` is frozen."""
    if problems:
        raise config_error(problems)
    if cfg.is_frozen():
        raise FrozenConfigError("cannot merge into a frozen config; use cfg.clone() first")
    for node, name, value in updates:
        node._data[name] = value


def _collect_updates(
    node: CfgNode, overrides: Mapping[str, Any], source: str, updates: list[tuple[CfgNode, str, Any]],
    root: CfgNode, problems: list[str],
) -> None:
    """Check ``overrides`` against ``node``'s schema: append ``(node, key, value)`` updates, and a
    line to ``problems`` for every unknown key or wrong value (checking goes on past them).

    ``root`` is the whole config, where a renamed legacy key's value goes."""
    for raw_name, value in overrides.items():
        name = str(raw_name)
        dotted = f"{node._prefix}{name}"
        try:
            if dotted in node._info.legacy:
                renamed = _handle_legacy(dotted, node._info.legacy[dotted], value, source)
                if renamed is not None:
                    _collect_updates(root, renamed, source, updates, root, problems)
                continue
            spec = node._specs.get(name)
            if spec is None:
                raise ConfigError(f"{source}: {node._unknown_key_message(name, value)}")
            if isinstance(spec, Key):
                updates.append((node, name, _coerce(value, spec, dotted, source)))
            elif value is None:  # a section whose entries are all commented out
                continue
            elif isinstance(value, Mapping):
                _collect_updates(node._data[name], value, source, updates, root, problems)
            else:
                raise ConfigError(
                    f"{source}: key '{dotted}' is a section and expects a mapping, "
                    f"got {_describe_value(value)}"
                )
        except ConfigError as exc:
            problems.append(str(exc))


def _handle_legacy(dotted: str, entry: LegacyKey, value: Any, source: str) -> dict | None:
    """Apply a legacy key's action; returns the nested override of a renamed key's new key, else None."""
    if entry.action == "error":
        raise ConfigError(f"{source}: key '{dotted}' is no longer supported. {entry.message}")
    if entry.action == "fixed":
        if value != entry.value or type(value) is not type(entry.value):
            raise ConfigError(f"{source}: key '{dotted}' = {_describe_value(value)} is not supported: "
                              f"{entry.message}")
        logger.info("%s: legacy key '%s' has its only supported value %r; it can be deleted", source, dotted,
                    value)
        return None
    if entry.action == "renamed":
        new_value = entry.convert(value) if entry.convert is not None else value
        logger.warning("%s: key '%s' is deprecated, read as %s: %s (%s)", source, dotted, entry.new_key,
                       _describe_value(new_value), entry.message)
        nested: Any = new_value
        for part in reversed(entry.new_key.split(".")):
            nested = {part: nested}
        return nested
    logger.warning("%s: ignoring legacy key '%s': %s", source, dotted, entry.message)
    return None
