"""Scripts in tracking/ run from any working directory and fail clearly on bad input."""
from __future__ import annotations

import os
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
    assert "--debug" in result.stdout  # every script shows the traceback of an error on request


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


# ----------------------------------------------------------------------------- the error boundary
# one user mistake per script: exit 2, one "error:" line naming what is wrong, no traceback
MISTAKES = {
    "ablation.py": (["--config", "nowhere", "--test_dataset", "synthetic_test", "--save_dir", "abl"],
                    "no experiment config 'nowhere'"),
    "analysis_results.py": (["--dataset", "synthetic_test", "--results_dir", "res", "--dataset_dir",
                             "synthetic=nowhere"], "dataset root"),
    "convert_cls_to_tracking.py": (["--input", "missing.pth.tar", "--output", "out.pth.tar"], "missing.pth.tar"),
    "make_synthetic_dataset.py": (["--synthetic_dir", "a_file"], "a_file is not a directory"),
    "probe_cls_labels.py": (["--config", "hiptrack_tiny", "--opts", "MODEL.FOO=1"], "'MODEL.FOO'"),
    "quickstart.py": (["--synthetic_dir", "a_file", "--sequences", "2", "--frames", "2", "--save_dir", "q"], "a_file"),
    "show_config.py": (["hiptrack_tiny", "--opts", "TRAIN.LR=abc"], "key 'TRAIN.LR': expected float"),
    "test.py": (["hiptrack_cls", "cfg/nowhere.yaml"], "config file 'cfg/nowhere.yaml' does not exist"),
    "test_cls_annotations.py": (["--cls_ann_dir", "nowhere"], "'nowhere' does not exist"),
    "train.py": (["--config", "hiptrack_tiny", "--save_dir", "out", "--opts", "TRAIN.BATCH_SIZ=2"],
                 "did you mean 'TRAIN.BATCH_SIZE'"),
}


def test_every_script_has_a_mistake_case():
    assert set(MISTAKES) == {p.name for p in SCRIPTS}


@pytest.mark.parametrize("script", sorted(MISTAKES))
def test_a_user_mistake_exits_2_with_one_error_line(script, tmp_path):
    (tmp_path / "a_file").write_text("")
    argv, fragment = MISTAKES[script]
    result = run([str(REPO / "tracking" / script), *argv], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and fragment in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def boundary_run(work, **kwargs) -> int:
    from lib.utils.cli import run_cli
    return run_cli(work, **kwargs)


def test_exit_codes_follow_the_type_and_whether_the_run_started(tmp_path, capsys):
    from lib.config.node import ConfigError
    from lib.utils.checkpoint import CheckpointError
    from lib.utils.cli import UsageError, exit_code_of
    user = [ConfigError("c"), CheckpointError("k"), UsageError("u"), FileNotFoundError("f"), PermissionError("p"),
            NotADirectoryError("n"), IsADirectoryError("i"), FileExistsError("e")]
    for error in user:
        assert exit_code_of(error, started=False) == 2, error
        assert exit_code_of(error, started=True) == 1, error  # after the start: a failed run
    for error in (ValueError("v"), RuntimeError("r"), OSError("o"), KeyError("k")):
        assert exit_code_of(error, started=False) == 1
    assert exit_code_of(ValueError("v"), started=False, user_errors=(ValueError,)) == 2
    assert exit_code_of(KeyboardInterrupt(), started=False) == exit_code_of(KeyboardInterrupt(), started=True) == 130


def test_boundary_prints_one_line_and_logs_the_traceback(tmp_path, capsys):
    from lib.utils.cli import UsageError
    log = tmp_path / "run.log"

    def mistake(run):
        run.use_log_file(log)
        raise UsageError("--thing /x is not a folder")

    assert boundary_run(mistake) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: --thing /x is not a folder\n" and captured.out == ""
    text = log.read_text()
    assert "ERROR error: --thing /x is not a folder" in text and "Traceback (most recent call last)" in text

    def failing(run):
        run.use_log_file(log)
        run.start()
        raise FileNotFoundError("frame 7 vanished")  # after the start: not the user's mistake

    assert boundary_run(failing) == 1
    assert capsys.readouterr().err == f"error: FileNotFoundError: frame 7 vanished (traceback in {log})\n"

    def no_log(run):
        raise RuntimeError("boom")

    assert boundary_run(no_log) == 1
    assert capsys.readouterr().err == "error: RuntimeError: boom (rerun with --debug for the traceback)\n"
    assert boundary_run(no_log, debug=True) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)") and err.endswith("error: RuntimeError: boom\n")

    def interrupted(run):
        raise KeyboardInterrupt

    assert boundary_run(interrupted) == 130 and capsys.readouterr().err == "error: interrupted\n"
    assert boundary_run(lambda run: 3) == 3  # a script's own codes pass through
    with pytest.raises(SystemExit):  # argparse's usage errors keep their own exit
        boundary_run(lambda run: sys.exit(2))


def test_sigterm_raises_keyboard_interrupt_inside_the_block_only():
    import os
    import signal
    from lib.utils.cli import sigterm_as_interrupt
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
    assert signal.getsignal(signal.SIGTERM) is before


def test_lock_file_is_exclusive_and_names_its_holder(tmp_path):
    import json
    import socket
    from lib.utils.locks import LockHeldError, acquire_lock, hold_lock, release_lock
    path = tmp_path / "run" / "run.lock"
    with hold_lock(path) as owner:
        record = json.loads(path.read_text())
        assert record["pid"] == os.getpid() == owner.pid and record["host"] == socket.gethostname()
        with pytest.raises(LockHeldError, match=rf"in use by pid {os.getpid()} on host"):
            acquire_lock(path, hint="try later")  # even this process: a lock is not re-entrant
    assert not path.exists()
    path.write_text("not json")
    with pytest.raises(LockHeldError, match=rf"does not say who holds it.*rm {path}"):
        acquire_lock(path)
    other = acquire_lock(tmp_path / "other.lock")
    (tmp_path / "other.lock").write_text(json.dumps({"pid": 1, "host": "h", "since": "s", "command": "c"}))
    release_lock(tmp_path / "other.lock", other)  # never removes a lock that is not its own
    assert (tmp_path / "other.lock").exists()
