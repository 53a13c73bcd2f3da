"""Scripts in tracking/ run from any working directory and fail clearly on bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "tracking").glob("*.py"))


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_help_from_another_directory(script, tmp_path):
    result = run([str(script), "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


def test_show_config_resolves_name_and_overrides(tmp_path):
    result = run([str(REPO / "tracking/show_config.py"), "hiptrack_tiny", "--opts", "MODEL.MAX_MEM=3"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "MAX_MEM: 3" in result.stdout and "vit_tiny_test_ce" in result.stdout


def test_show_config_unknown_key_exits_2_with_suggestion(tmp_path):
    result = run([str(REPO / "tracking/show_config.py"), "hiptrack_tiny", "--opts", "MODEL.MAX_MEMS=3"], tmp_path)
    assert result.returncode == 2
    assert "MODEL.MAX_MEMS" in result.stderr and "MODEL.MAX_MEM" in result.stderr


def test_show_config_lists_every_key_with_comment(tmp_path):
    result = run([str(REPO / "tracking/show_config.py"), "--keys"], tmp_path)
    lines = result.stdout.strip().splitlines()
    assert len(lines) > 50 and all("  # " in line for line in lines)
    assert any(line.startswith("TEST.UPDATE_INTERVAL = 20") for line in lines)
