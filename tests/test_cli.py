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


def test_deprecated_flag_spellings_are_rewritten_with_one_warning(caplog) -> None:
    import argparse
    import logging

    from lib.utils.cli import parse_with_renamed_flags, renamed_flags_epilog

    parser = argparse.ArgumentParser()
    parser.add_argument("--synthetic_dir")
    parser.add_argument("--test_fraction", type=float)
    renamed = {"--out": "--synthetic_dir", "--test-fraction": "--test_fraction"}
    with caplog.at_level(logging.WARNING):
        args = parse_with_renamed_flags(parser, ["--out", "a", "--test-fraction=0.5", "--out", "b"], renamed)
    assert (args.synthetic_dir, args.test_fraction) == ("b", 0.5)
    assert caplog.text.count("--out is deprecated, use --synthetic_dir") == 1
    assert "--test-fraction is deprecated, use --test_fraction" in caplog.text
    assert parse_with_renamed_flags(parser, ["--synthetic_dir", "c"], renamed).synthetic_dir == "c"
    assert renamed_flags_epilog(renamed) == ("Deprecated spellings still accepted: --out (now --synthetic_dir), "
                                             "--test-fraction (now --test_fraction)")


def test_old_flag_spelling_still_runs_a_script(tmp_path):
    out = tmp_path / "syn"
    result = run([str(REPO / "tracking/make_synthetic_dataset.py"), "--out", str(out), "--sequences", "2",
                  "--frames", "3", "--size", "128x96", "--test-fraction", "0.5", "--quiet"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning: --out is deprecated, use --synthetic_dir" in result.stderr
    assert "warning: --test-fraction is deprecated, use --test_fraction" in result.stderr
    assert sorted(p.name for p in (out / "train").iterdir()) != [] and (out / "test" / "list.txt").is_file()
