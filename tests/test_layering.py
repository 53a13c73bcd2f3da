"""The package's import structure: every import runs to a lower layer (or within its own package).

Layers, lowest first; packages on one layer must not import each other. Training and testing both
read datasets and write runs through the lower layers, never through each other.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib"
LAYERS: list[set[str]] = [
    {"lib.challenges"},
    {"lib.utils"},
    {"lib.config"},
    {"lib.models", "lib.dataset", "lib.synthetic"},
    {"lib.train", "lib.test"},
    {"lib.pipeline"},
]


def package_of(module: str) -> str:
    """``lib.<top>`` of a dotted module name (``lib`` itself for the root package)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def layer_of(package: str) -> int:
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    raise AssertionError(f"package {package} is on no layer of tests/test_layering.py: add it")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every ``lib.*`` import in a file, including imports inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return [(line, m) for line, m in found if m == "lib" or m.startswith("lib.")]


def module_files() -> list[Path]:
    return sorted(p for p in LIB.rglob("*.py") if p.name != "__init__.py" or p.parent != LIB)


@pytest.mark.parametrize("path", module_files(), ids=lambda p: str(p.relative_to(LIB.parent)))
def test_imports_run_downward(path: Path) -> None:
    own = package_of(".".join(path.relative_to(LIB.parent).with_suffix("").parts))
    own_layer = layer_of(own)
    for line, module in imported_modules(path):
        target = package_of(module)
        if target == own:
            continue
        assert layer_of(target) < own_layer, (
            f"{path.relative_to(LIB.parent)}:{line} imports {module}: {own} (layer {own_layer}) may only import "
            f"packages on lower layers, {target} is on layer {layer_of(target)}")


def test_layer_table_covers_every_package() -> None:
    packages = {f"lib.{p.stem if p.is_file() else p.name}" for p in LIB.iterdir()
                if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.name != "__init__.py")}
    for package in packages:
        layer_of(package)


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from lib.test.tracker.hiptrack import load_network\n")
    assert imported_modules(bad) == [(2, "lib.test.tracker.hiptrack")]
    assert layer_of(package_of("lib.test.tracker.hiptrack")) == layer_of("lib.train")
