"""Training through the real command line (tracking/train.py) on generated synthetic data.

Every run uses the tiny HIPTrack-CLS config shrunk further with --opts (two search frames, a
couple of steps per epoch), so a run takes a second or two on a CPU. Covered: artefacts
(checkpoints, config.yaml, log, TensorBoard tags), exact resume, two-stage training and
FREEZE_CLS_EPOCH, NaN handling, two-process DDP with gloo through torchrun, input errors,
metrics.jsonl (same numbers as the log and TensorBoard, resume, counts and nulls) and the
multi-label mode (soft targets, mAP / macro-F1).
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import load_script
from lib.challenges import IGNORE_INDEX
from lib.synthetic import generate_dataset
from lib.utils.records import append_jsonl
from lib.utils.runs import read_metrics

REPO = Path(__file__).resolve().parents[1]
TRAIN_SCRIPT = REPO / "tracking" / "train.py"
CONFIG = "hiptrack_cls_tiny"
SEED = 7
# two iterations of batch 1 per epoch, two search frames of 64 px (template 32 px)
SMALL = ["DATA.TRAIN.DATASETS_NAME=[SYNTHETIC_train]", "DATA.VAL.DATASETS_NAME=[SYNTHETIC_test]",
         "DATA.TRAIN.SAMPLE_PER_EPOCH=2", "DATA.VAL.SAMPLE_PER_EPOCH=1", "TRAIN.BATCH_SIZE=1",
         "DATA.SEARCH.NUMBER=2", "DATA.SEARCH.SIZE=64", "DATA.TEMPLATE.SIZE=32", "TEST.SEARCH_SIZE=64",
         "TEST.TEMPLATE_SIZE=32", "TRAIN.EPOCH=2"]
TB_TAGS = ("Loss/total", "Loss/giou", "Loss/l1", "Loss/location", "Loss/classification", "IoU", "Accuracy")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Train on one intra-op thread: on a shared 2-core machine two threads can be 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def train_cli():
    """tracking/train.py as a module (tracking/ is not a package)."""
    return load_script(TRAIN_SCRIPT)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A data dir holding ``synthetic/`` (3 train + 1 test sequences) with challenge labels."""
    root = tmp_path_factory.mktemp("data")
    generate_dataset(root / "synthetic", sequences=4, frames=20, seed=0, size=(160, 120))
    return root


def cli_args(data_dir: Path, save_dir: Path, *opts: str, extra: tuple[str, ...] = (), val: bool = False) -> list[str]:
    """Arguments of a tiny CPU run; later ``opts`` override the SMALL defaults."""
    labels = data_dir / "synthetic" / "cls_annotations"
    args = ["--script", "hiptrack", "--config", CONFIG, "--save_dir", str(save_dir), "--mode", "single",
            "--data_dir", str(data_dir), "--device", "cpu", "--seed", str(SEED), *extra]
    if not val:
        args.append("--no_val")
    return args + ["--opts", *SMALL, f"DATA.TRAIN.CLS_ANN_DIR={labels}", f"DATA.VAL.CLS_ANN_DIR={labels}", *opts]


def run_dir(save_dir: Path) -> Path:
    return save_dir / "checkpoints" / "train" / "hiptrack" / CONFIG


def metrics(save_dir: Path) -> list[dict]:
    return read_metrics(run_dir(save_dir) / "metrics.jsonl")


def checkpoint(save_dir: Path, epoch: int) -> dict:
    return torch.load(run_dir(save_dir) / f"HIPTrack_ep{epoch:04d}.pth.tar", map_location="cpu", weights_only=True)


def log_text(save_dir: Path) -> str:
    return (save_dir / "logs" / f"hiptrack-{CONFIG}.log").read_text()


def epoch_lines(save_dir: Path, epoch: int) -> list[str]:
    """The training log lines of ``epoch`` (per iteration and the epoch summary), timestamps removed."""
    pattern = re.compile(rf"\[train\] epoch {epoch}[ :].*")
    lines = [m.group(0) for m in pattern.finditer(log_text(save_dir))]
    return [re.sub(r", [\d.]+ samples/s", "", line) for line in lines]


def equal_state(a: dict, b: dict, prefix: str = "", invert: bool = False) -> bool:
    """Whether the tensors of ``a`` and ``b`` whose keys start with ``prefix`` (or not, ``invert``) are equal."""
    keys = [k for k in a if k.startswith(prefix) != invert]
    assert keys
    return all(torch.equal(a[k], b[k]) for k in keys)


def tensorboard_events(directory: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(directory), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def full_run(train_cli, data_dir, tmp_path_factory) -> Path:
    """Two uninterrupted epochs with validation; the save_dir."""
    save_dir = tmp_path_factory.mktemp("full")
    assert train_cli.main(cli_args(data_dir, save_dir, val=True)) == 0
    return save_dir


# ---------------------------------------------------------------------- a. artefacts
def test_run_writes_checkpoints_config_log_and_tensorboard(full_run):
    for epoch in (1, 2):
        state = checkpoint(full_run, epoch)
        assert {"net", "optimizer", "scheduler", "scaler", "epoch", "stage", "rng", "config"} <= set(state)
        assert state["epoch"] == epoch and state["stage"] == 0
        assert state["config"]["TRAIN"]["EPOCH"] == 2 and state["config"]["DATA"]["SEARCH"]["NUMBER"] == 2
    assert "EPOCH: 2" in (run_dir(full_run) / "config.yaml").read_text()
    log = log_text(full_run)
    assert "[train] epoch 2:" in log and "[val] epoch 2:" in log and "saved" in log
    summary = epoch_lines(full_run, 2)[-1]
    for key in ("Loss/total", "Loss/giou", "Loss/l1", "Loss/location", "Loss/classification"):
        value = float(re.search(rf"{key} ([^,]+)", summary).group(1))
        assert math.isfinite(value), key

    tb_dir = full_run / "tensorboard" / "train" / "hiptrack" / CONFIG
    for split in ("train", "val"):
        events = tensorboard_events(tb_dir / split)
        scalars = set(events.Tags()["scalars"])
        assert set(TB_TAGS) <= scalars, set(TB_TAGS) - scalars
        assert any(t.startswith("Accuracy/") for t in scalars), scalars  # per-class accuracy
        assert "ConfusionMatrix" in events.Tags()["images"]
        assert [e.step for e in events.Scalars("Loss/total")] == [1, 2]
        assert all(math.isfinite(e.value) for tag in TB_TAGS for e in events.Scalars(tag))
        if split == "train":
            assert {"LearningRate/heads", "LearningRate/backbone"} <= scalars
            # StepLR with LR_DROP_EPOCH 1: the LR used in epoch 2 is a tenth of epoch 1's
            lrs = [e.value for e in events.Scalars("LearningRate/heads")]
            assert lrs == pytest.approx([1e-4, 1e-5])


# ---------------------------------------------------------------------- b. exact resume
def test_resume_continues_exactly(train_cli, data_dir, full_run, tmp_path):
    assert train_cli.main(cli_args(data_dir, tmp_path, "TRAIN.EPOCH=1", val=True)) == 0
    assert not (run_dir(tmp_path) / "HIPTrack_ep0002.pth.tar").exists()
    assert train_cli.main(cli_args(data_dir, tmp_path, "TRAIN.EPOCH=2", extra=("--resume",), val=True)) == 0
    assert "resumed from" in log_text(tmp_path)
    resumed, full = epoch_lines(tmp_path, 2), epoch_lines(full_run, 2)
    assert len(full) == 3 and resumed == full  # 2 iterations and the summary, same losses to 4 decimals
    a, b = checkpoint(full_run, 2), checkpoint(tmp_path, 2)
    assert equal_state(a["net"], b["net"])
    for name, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], b["optimizer"]["state"][name]["exp_avg"])
    tb = [tensorboard_events(d / "tensorboard" / "train" / "hiptrack" / CONFIG / "train") for d in (full_run, tmp_path)]
    assert [e.value for e in tb[0].Scalars("Loss/total")] == [e.value for e in tb[1].Scalars("Loss/total")]


# ---------------------------------------------------------------------- c. stages and freezing
@pytest.fixture
def initial_weights(monkeypatch) -> list[dict]:
    """Records the model weights at the start of ``Trainer.fit`` (after any resume)."""
    from lib.train.trainer import Trainer
    seen: list[dict] = []
    fit = Trainer.fit

    def recording_fit(self):
        seen.append({k: v.clone() for k, v in self._bare_model.state_dict().items()})
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", recording_fit)
    return seen


def test_two_stage_freezes_then_trains_everything(train_cli, data_dir, tmp_path, initial_weights):
    opts = ("TRAIN.TWO_STAGE=True", "TRAIN.STAGE1_EPOCHS=1", "TRAIN.STAGE2_EPOCHS=1", "TRAIN.EPOCH=2",
            "DATA.TRAIN.SAMPLE_PER_EPOCH=1")
    assert train_cli.main(cli_args(data_dir, tmp_path, *opts)) == 0
    start, ep1, ep2 = initial_weights[0], checkpoint(tmp_path, 1), checkpoint(tmp_path, 2)
    assert (ep1["stage"], ep2["stage"]) == (1, 2)
    assert equal_state(start, ep1["net"], "cls_head.", invert=True)  # all but the head: bitwise unchanged
    assert not equal_state(start, ep1["net"], "cls_head.")
    assert not equal_state(ep1["net"], ep2["net"], "backbone.")
    assert not equal_state(ep1["net"], ep2["net"], "box_head.")
    assert "stage 2 (everything) from epoch 2" in log_text(tmp_path)


def test_freeze_cls_epoch_keeps_the_head_and_resumes(train_cli, data_dir, tmp_path):
    opts = ("TRAIN.FREEZE_CLS_EPOCH=2", "DATA.TRAIN.SAMPLE_PER_EPOCH=1")
    assert train_cli.main(cli_args(data_dir, tmp_path, *opts, "TRAIN.EPOCH=2")) == 0
    # resuming after the head was frozen rebuilds the optimiser groups of the stage's start
    assert train_cli.main(cli_args(data_dir, tmp_path, *opts, "TRAIN.EPOCH=3", extra=("--resume",))) == 0
    ep1, ep2, ep3 = (checkpoint(tmp_path, e)["net"] for e in (1, 2, 3))
    assert equal_state(ep1, ep2, "cls_head.") and equal_state(ep2, ep3, "cls_head.")
    assert not equal_state(ep1, ep2, "backbone.") and not equal_state(ep2, ep3, "backbone.")


# ---------------------------------------------------------------------- d. NaN losses
def poison_actor(monkeypatch, bad_calls: dict[int, str] | None) -> None:
    """Make the actor's ``"loss"`` or ``"gradient"`` NaN on the given 1-based calls (None: every loss)."""
    from lib.train.actors.hiptrack_cls import HIPTrackActor
    original = HIPTrackActor.__call__
    calls = {"n": 0}

    def call(self, batch, epoch):
        loss, stats = original(self, batch, epoch)
        calls["n"] += 1
        mode = "loss" if bad_calls is None else bad_calls.get(calls["n"])
        if mode is not None:
            if mode == "loss":
                loss = loss * float("nan")
            else:  # finite value, NaN gradient: d/dx sqrt(x) at 0 is inf, times 0
                weight = next(self.net.parameters())
                loss = loss + 0 * torch.sqrt(weight.sum() * 0)
        return loss, stats

    monkeypatch.setattr(HIPTrackActor, "__call__", call)


def test_nonfinite_steps_are_skipped_and_counted(train_cli, data_dir, tmp_path, monkeypatch):
    poison_actor(monkeypatch, {1: "loss", 2: "gradient"})
    opts = ("TRAIN.EPOCH=1", "DATA.TRAIN.SAMPLE_PER_EPOCH=3")
    assert train_cli.main(cli_args(data_dir, tmp_path, *opts)) == 0
    log = log_text(tmp_path)
    assert "non-finite loss at epoch 1 iteration 1: step skipped (1 in a row, 1 in total)" in log
    assert "non-finite gradient at epoch 1 iteration 2: step skipped (2 in a row, 2 in total)" in log
    assert "[train] epoch 1 it 3/3" in log  # the third step trained
    state = checkpoint(tmp_path, 1)
    assert state["nonfinite_total"] == 2
    assert all(torch.isfinite(v).all() for v in state["net"].values() if v.is_floating_point())


def test_too_many_nonfinite_steps_stop_the_run(train_cli, data_dir, tmp_path, monkeypatch):
    poison_actor(monkeypatch, None)
    opts = ("TRAIN.EPOCH=1", "DATA.TRAIN.SAMPLE_PER_EPOCH=3", "TRAIN.MAX_NONFINITE_STEPS=2")
    assert train_cli.main(cli_args(data_dir, tmp_path, *opts)) == 1
    log = log_text(tmp_path)
    assert "2 consecutive non-finite losses / gradients, the last at epoch 1 iteration 2" in log
    assert "TRAIN.MAX_NONFINITE_STEPS" in log
    assert not (run_dir(tmp_path) / "HIPTrack_ep0001.pth.tar").exists()


# ---------------------------------------------------------------------- e. DDP on CPU
def run_torchrun(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(TRAIN_SCRIPT), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=REPO)


def ddp_args(args: list[str]) -> list[str]:
    args = [a for a in args if a != "single"]
    i = args.index("--mode")
    return args[:i + 1] + ["multiple", "--nproc_per_node", "2"] + args[i + 1:]


def test_ddp_two_processes_on_cpu(data_dir, tmp_path):
    args = ddp_args(cli_args(data_dir, tmp_path, "TRAIN.EPOCH=1", "DATA.TRAIN.SAMPLE_PER_EPOCH=4"))
    result = run_torchrun(args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world size 2" in result.stderr
    assert re.search(r"process group: gloo, rendezvous (localhost|127\.0\.0\.1):\d+", result.stderr), result.stderr[-3000:]
    state = checkpoint(tmp_path, 1)
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2
    assert "[train] epoch 1 it 2/2" in log_text(tmp_path)  # 4 samples over 2 ranks, batch 1
    [record] = metrics(tmp_path)  # rank 0 alone writes, once per epoch
    assert record["epoch"] == 1 and record["unreadable_samples"] == 0 and record["train"]["labeled_frames"] == 8.0


def test_ddp_failing_worker_fails_the_command(data_dir, tmp_path):
    args = ddp_args(cli_args(data_dir, tmp_path, "TRAIN.EPOCH=1"))
    args[args.index("--data_dir") + 1] = str(tmp_path / "no_such_data")
    result = run_torchrun(args)
    assert result.returncode != 0
    assert "synthetic" in result.stderr and "HIPTRACK_SYNTHETIC_DIR" in result.stderr


# ---------------------------------------------------------------------- f. input errors
def test_unknown_config_name(train_cli, tmp_path, capsys):
    assert train_cli.main(["--config", "hiptrack_nope", "--save_dir", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "no experiment config 'hiptrack_nope'" in err and "hiptrack_cls_tiny" in err
    assert "Traceback" not in err


def test_unknown_opts_key(train_cli, data_dir, tmp_path, capsys):
    assert train_cli.main(cli_args(data_dir, tmp_path, "TRAIN.BATCH_SIZ=2")) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'TRAIN.BATCH_SIZ'" in err and "TRAIN.BATCH_SIZE" in err


def test_missing_dataset_root(train_cli, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("HIPTRACK_SYNTHETIC_DIR", raising=False)
    missing = tmp_path / "nowhere"
    assert train_cli.main(cli_args(missing, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert f"dataset root {missing / 'synthetic'} does not exist" in err
    assert "--dataset_dir synthetic=PATH" in err and "HIPTRACK_SYNTHETIC_DIR" in err and "--data_dir" in err
    assert_one_error_line(err)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def assert_one_error_line(err: str) -> str:
    """The console shows one ``error:`` line (continued by indented detail lines) and no traceback."""
    [line] = error_lines(err)
    assert "Traceback" not in err
    return line


@pytest.mark.parametrize("case", ["unknown_dataset_name", "cuda_without_cuda", "save_dir_not_writable",
                                  "config_errors", "missing_config_file"])
def test_user_mistakes_exit_2_with_one_error_line_and_the_traceback_in_the_log(train_cli, data_dir, tmp_path,
                                                                                 capsys, case):
    if case == "cuda_without_cuda" and torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    save_dir, opts, extra = tmp_path / "out", (), ()
    if case == "unknown_dataset_name":
        extra = ("--dataset_dir", "synthetc=/data/x")
    elif case == "cuda_without_cuda":
        extra = ("--device", "cuda")
    elif case == "save_dir_not_writable":
        (tmp_path / "a_file").write_text("")
        save_dir = tmp_path / "a_file" / "out"  # (root may write anywhere: a file as parent fails for anyone)
    elif case == "config_errors":
        opts = ("MODEL.FOO=1", "TRAIN.LR=abc")
    args = cli_args(data_dir, save_dir, *opts, extra=extra)
    if case == "missing_config_file":
        args[args.index("--config") + 1] = str(tmp_path / "nowhere.yaml")
    assert train_cli.main(args) == 2
    line = assert_one_error_line(capsys.readouterr().err)
    expected = {"unknown_dataset_name": "unknown dataset 'synthetc'", "cuda_without_cuda": "--device cuda",
                "save_dir_not_writable": f"cannot write the run's log under --save_dir {save_dir}",
                "config_errors": "2 config errors:", "missing_config_file": "nowhere.yaml"}[case]
    assert expected in line
    log = save_dir / "logs" / f"hiptrack-{CONFIG}.log"
    if case == "config_errors":  # also every problem, and a close leaf key, not the section MODEL
        err_text = log.read_text()
        assert "'MODEL.FOO' (no similar key exists; MODEL holds MODEL.PRETRAIN_FILE" in err_text
        assert "key 'TRAIN.LR': expected float, got str 'abc'" in err_text
    if case in ("save_dir_not_writable", "missing_config_file"):
        return  # no log: it cannot be written, or its name comes from the config file
    assert "Traceback (most recent call last)" in log.read_text() and expected in log.read_text()
    assert not run_dir(save_dir).exists() or not any(run_dir(save_dir).iterdir())


def test_debug_prints_the_traceback_on_the_console(train_cli, data_dir, tmp_path, capsys):
    assert train_cli.main(cli_args(data_dir, tmp_path, "MODEL.FOO=1", extra=("--debug",))) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "lib.config.node.ConfigError" in err
    assert len(error_lines(err)) == 1 and err.rstrip().splitlines()[-1].startswith("error:")


def test_ddp_launcher_checks_the_config_once(train_cli, data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert train_cli.main(ddp_args(cli_args(data_dir, tmp_path, "TRAIN.BATCH_SIZ=2"))) == 2
    line = assert_one_error_line(capsys.readouterr().err)
    assert "did you mean 'TRAIN.BATCH_SIZE'" in line


# ---------------------------------------------------------------------- i. one run per folder
def lock_file(save_dir: Path) -> Path:
    return run_dir(save_dir) / "run.lock"


def write_lock(save_dir: Path, pid: int, host: str | None = None) -> Path:
    import socket
    path = lock_file(save_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "since": "2024-01-01 00:00:00",
                                "command": "tracking/train.py --config x"}) + "\n")
    return path


def files_of(save_dir: Path) -> dict[str, bytes]:
    """Every file under ``save_dir`` but the log, with its bytes."""
    return {str(p.relative_to(save_dir)): p.read_bytes() for p in sorted(save_dir.rglob("*"))
            if p.is_file() and "logs" not in p.parts}


def test_a_second_training_into_a_locked_run_is_refused_naming_the_holder(train_cli, data_dir, tmp_path, capsys):
    import socket
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = write_lock(tmp_path, holder.pid)
        before = lock.read_text()
        assert train_cli.main(cli_args(data_dir, tmp_path, "TRAIN.EPOCH=1")) == 2
        line = assert_one_error_line(capsys.readouterr().err)
        assert f"in use by pid {holder.pid} on host {socket.gethostname()}" in line
        assert "another --save_dir" in line
        assert lock.read_text() == before  # the holder's lock is left alone
        assert not list(run_dir(tmp_path).glob("HIPTrack_ep*")) and not (run_dir(tmp_path) / "config.yaml").exists()
        assert (tmp_path / "logs" / f"hiptrack-{CONFIG}.log").read_text() == ""  # nothing in the holder's log
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_of_another_host_is_reported_with_how_to_remove_it(train_cli, data_dir, tmp_path, capsys):
    lock = write_lock(tmp_path, 12345, host="elsewhere.example")
    assert train_cli.main(cli_args(data_dir, tmp_path, "TRAIN.EPOCH=1")) == 2
    line = assert_one_error_line(capsys.readouterr().err)
    assert "pid 12345 on host elsewhere.example" in line and f"rm {lock}" in line
    assert lock.is_file()


def test_a_stale_lock_of_a_dead_process_is_taken_over_and_released(train_cli, data_dir, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock(tmp_path, dead.pid)
    assert train_cli.main(cli_args(data_dir, tmp_path, "TRAIN.EPOCH=1")) == 0
    assert f"taking over the stale lock {lock_file(tmp_path)}: its holder, pid {dead.pid}" in log_text(tmp_path)
    assert not lock_file(tmp_path).exists()


@pytest.mark.parametrize("exit_path", ["done", "failed_run", "user_error", "interrupted"])
def test_the_lock_is_released_on_every_exit_path(train_cli, data_dir, tmp_path, monkeypatch, capsys, exit_path):
    from lib.train.trainer import Trainer
    seen = []
    fit = Trainer.fit

    def watching_fit(self):
        seen.append(json.loads(lock_file(tmp_path).read_text())["pid"])  # held while training
        if exit_path == "failed_run":
            raise RuntimeError("boom")
        if exit_path == "interrupted":
            raise KeyboardInterrupt
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", watching_fit)
    args = cli_args(data_dir, tmp_path, "TRAIN.EPOCH=1")
    if exit_path == "user_error":
        args[args.index("--data_dir") + 1] = str(tmp_path / "no_data")
    code = train_cli.main(args)
    assert code == {"done": 0, "failed_run": 1, "user_error": 2, "interrupted": 130}[exit_path]
    assert seen == ([] if exit_path == "user_error" else [os.getpid()])
    assert not lock_file(tmp_path).exists()
    err = capsys.readouterr().err
    if exit_path == "failed_run":  # a run that started and failed: the type, and where the traceback is
        line = assert_one_error_line(err)
        assert line == f"error: RuntimeError: boom (traceback in {tmp_path / 'logs' / f'hiptrack-{CONFIG}.log'})"
        assert "Traceback (most recent call last)" in log_text(tmp_path) and "RuntimeError: boom" in log_text(tmp_path)
    if exit_path == "interrupted":
        assert assert_one_error_line(err) == "error: interrupted"


def test_a_fresh_run_over_checkpoints_is_refused_and_overwrite_starts_clean(train_cli, data_dir, tmp_path, capsys):
    assert train_cli.main(cli_args(data_dir, tmp_path, "TRAIN.EPOCH=2")) == 0
    before = files_of(tmp_path)
    assert train_cli.main(cli_args(data_dir, tmp_path, "TRAIN.EPOCH=1")) == 2
    line = assert_one_error_line(capsys.readouterr().err)
    assert f"{run_dir(tmp_path)} already holds 2 checkpoint(s) of {CONFIG} (epochs 1..2)" in line
    assert "--resume" in line and "--overwrite" in line
    assert files_of(tmp_path) == before

    tb_train = tmp_path / "tensorboard" / "train" / "hiptrack" / CONFIG / "train"
    assert len(list(tb_train.iterdir())) == 1
    args = cli_args(data_dir, tmp_path, "TRAIN.EPOCH=1", extra=("--overwrite",))
    args[args.index("--seed") + 1] = str(SEED + 1)
    assert train_cli.main(args) == 0
    assert sorted(p.name for p in run_dir(tmp_path).glob("HIPTrack_ep*")) == ["HIPTrack_ep0001.pth.tar"]
    assert [r["epoch"] for r in metrics(tmp_path)] == [1]
    assert len(list(tb_train.iterdir())) == 1  # the old run's events are gone, not mixed in
    old = torch.load(io.BytesIO(before[f"checkpoints/train/hiptrack/{CONFIG}/HIPTrack_ep0001.pth.tar"]),
                     weights_only=True)
    assert not equal_state(old["net"], checkpoint(tmp_path, 1)["net"], "box_head.")  # the new run's, other seed
    assert "--overwrite: removed the previous run's checkpoints" in log_text(tmp_path)


def test_resume_and_overwrite_together_are_refused(train_cli, data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train_cli.main(cli_args(data_dir, tmp_path, extra=("--resume", "--overwrite")))
    assert exc.value.code == 2 and "pass one of them" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["garbage_file", "truncated_latest", "another_config"])
def test_a_failed_resume_changes_nothing_on_disk(train_cli, data_dir, tmp_path, capsys, bad):
    assert train_cli.main(cli_args(data_dir, tmp_path, "TRAIN.EPOCH=1")) == 0
    resume: tuple[str, ...]
    if bad == "garbage_file":
        target = tmp_path / "garbage.pth.tar"
        target.write_bytes(b"not a checkpoint" * 10)
        resume = ("--resume", str(target))
    elif bad == "truncated_latest":
        target = run_dir(tmp_path) / "HIPTrack_ep0001.pth.tar"
        target.write_bytes(target.read_bytes()[:2000])
        resume = ("--resume",)
    else:
        target = tmp_path / "other.pth.tar"
        other_run = cli_args(data_dir, tmp_path / "other", "TRAIN.EPOCH=1", "MODEL.CLS_HEAD.HIDDEN_DIM=8")
        assert train_cli.main(other_run) == 0
        shutil.copy(run_dir(tmp_path / "other") / "HIPTrack_ep0001.pth.tar", target)
        resume = ("--resume", str(target))
    capsys.readouterr()
    before = files_of(tmp_path)
    assert train_cli.main(cli_args(data_dir, tmp_path, "TRAIN.EPOCH=2", extra=resume)) == 2
    line = assert_one_error_line(capsys.readouterr().err)
    assert str(target) in line
    if bad == "another_config":
        assert "does not fit the model of this config" in line
    assert files_of(tmp_path) == before  # no checkpoint, metrics.jsonl, config.yaml or TensorBoard change
    assert not lock_file(tmp_path).exists()


# ---------------------------------------------------------------------- g. metrics.jsonl
def summary_values(save_dir: Path, split: str, epoch: int) -> dict[str, str]:
    """``{key: value as printed}`` of the ``[split] epoch E:`` summary line of the log."""
    line = re.search(rf"\[{split}\] epoch {epoch}: (.*)", log_text(save_dir)).group(1)
    return dict(item.rsplit(" ", 1) for item in line.split(", "))


def test_metrics_file_holds_the_logged_and_tensorboard_numbers(full_run):
    records = metrics(full_run)
    assert [(r["epoch"], r["stage"]) for r in records] == [(1, 0), (2, 0)]
    assert all(r["seconds"] > 0 and r["nonfinite_steps"] == r["unreadable_samples"] == r["rejected_samples"] == 0
               for r in records)
    assert [r["lr"] for r in records] == [pytest.approx({"heads": 1e-4, "backbone": 1e-5}),
                                          pytest.approx({"heads": 1e-5, "backbone": 1e-6})]
    tb_dir = full_run / "tensorboard" / "train" / "hiptrack" / CONFIG
    for split in ("train", "val"):
        events = tensorboard_events(tb_dir / split)
        board = {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}
        recorded = {(key, r["epoch"]): value for r in records for key, value in r[split].items() if key != "confusion"}
        if split == "train":
            recorded.update({(f"LearningRate/{g}", r["epoch"]): lr for r in records for g, lr in r["lr"].items()})
        assert set(recorded) == set(board)  # the same numbers, every epoch (none is NaN here)
        assert {k: pytest.approx(v, rel=1e-6) for k, v in recorded.items()} == board  # TensorBoard keeps float32
        for r in records:
            logged = summary_values(full_run, split, r["epoch"])
            lrs = {f"LearningRate/{g}": lr for g, lr in r["lr"].items()} if split == "train" else {}
            numbers = {**r[split], **lrs}
            # counts (Data/skipped_sequences, Data/unreadable_frames) are ints, printed as such
            assert logged == {k: f"{v:.4f}" if isinstance(v, float) else str(v)
                              for k, v in numbers.items() if k != "confusion"}
            confusion = torch.tensor(r[split]["confusion"])
            assert confusion.sum().item() == r[split]["labeled_frames"]
            assert confusion.trace().item() / confusion.sum().item() == pytest.approx(r[split]["Accuracy"])
    lines = (run_dir(full_run) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]  # one line per epoch


def test_resume_drops_stale_records_and_matches_an_uninterrupted_run(train_cli, data_dir, full_run, tmp_path):
    assert train_cli.main(cli_args(data_dir, tmp_path, "TRAIN.EPOCH=1", val=True)) == 0
    path = run_dir(tmp_path) / "metrics.jsonl"
    # as a run interrupted after writing epoch 2's record, before its checkpoint, and mid-way through epoch 3's
    append_jsonl(path, {**metrics(full_run)[1], "train": {"Loss/total": 99.0}})
    with open(path, "a") as f:
        f.write('{"epoch": 3, "train": {"Loss/to')
    assert train_cli.main(cli_args(data_dir, tmp_path, "TRAIN.EPOCH=2", extra=("--resume",), val=True)) == 0
    assert "metrics.jsonl: dropped 2 record(s) of epochs after 1" in log_text(tmp_path)

    def without_times(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in records]
    assert without_times(metrics(tmp_path)) == without_times(metrics(full_run))
    assert path.read_text().count("\n") == 2


def test_metrics_record_counts_skipped_steps_and_redraws_and_writes_nan_as_null(train_cli, data_dir, tmp_path,
                                                                                 monkeypatch):
    from lib.dataset.base import SequenceDataset
    from lib.dataset.image_loader import ImageReadError
    from lib.train.actors.hiptrack_cls import HIPTrackActor
    poison_actor(monkeypatch, {1: "loss"})
    poisoned = HIPTrackActor.__call__

    def nan_iou(self, batch, epoch):
        loss, stats = poisoned(self, batch, epoch)
        return loss, {**stats, "IoU": float("nan")}

    get_frames, reads = SequenceDataset.get_frames, []

    def first_read_fails(self, seq_id, frame_ids, reader):
        reads.append(seq_id)
        if len(reads) == 1:
            raise ImageReadError("cannot read image (test)")
        return get_frames(self, seq_id, frame_ids, reader)

    monkeypatch.setattr(HIPTrackActor, "__call__", nan_iou)
    monkeypatch.setattr(SequenceDataset, "get_frames", first_read_fails)
    assert train_cli.main(cli_args(data_dir, tmp_path, "TRAIN.EPOCH=1", "DATA.TRAIN.SAMPLE_PER_EPOCH=3")) == 0
    [record] = metrics(tmp_path)
    assert (record["nonfinite_steps"], record["unreadable_samples"], record["rejected_samples"]) == (1, 1, 0)
    assert (record["train"]["Data/unreadable_frames"], record["train"]["Data/skipped_sequences"]) == (1, 0)
    assert record["train"]["IoU"] is None and math.isfinite(record["train"]["Loss/total"])
    assert '"IoU": null' in (run_dir(tmp_path) / "metrics.jsonl").read_text()
    assert "IoU" not in summary_values(tmp_path, "train", 1) and "val" not in record  # --no_val


# ---------------------------------------------------------------------- g2. broken sequences and frames
@pytest.fixture(scope="module")
def broken_data_dir(tmp_path_factory) -> tuple[Path, dict]:
    """Synthetic data as a user may break it: a list.txt name without a folder, a groundtruth.txt
    cut short, and every third frame of the other train sequences truncated (an interrupted copy)."""
    root = tmp_path_factory.mktemp("broken")
    summary = generate_dataset(root / "synthetic", sequences=6, frames=20, seed=0, size=(160, 120))
    train = root / "synthetic" / "train"
    first, *others = summary["splits"]["train"]
    with open(train / "list.txt", "a") as f:
        f.write("ghost\n")
    gt = train / first / "groundtruth.txt"
    gt.write_text("".join(gt.read_text().splitlines(keepends=True)[:14]))
    for name in others:
        for frame in sorted((train / name).glob("*.jpg"))[2::3]:
            data = frame.read_bytes()
            frame.write_bytes(data[:len(data) // 2])
    return root, {"short": first, "others": others}


def test_broken_sequences_are_skipped_before_epoch_1_and_counted_every_epoch(train_cli, broken_data_dir, tmp_path):
    data, broken = broken_data_dir
    opts = ("DATA.TRAIN.SAMPLE_PER_EPOCH=3",)
    assert train_cli.main(cli_args(data, tmp_path, *opts, "TRAIN.EPOCH=1")) == 0
    assert train_cli.main(cli_args(data, tmp_path, *opts, "TRAIN.EPOCH=2", extra=("--resume",))) == 0
    log = log_text(tmp_path)
    short = broken["short"]
    runs = log.split("INFO lib.train: command:")[1:]
    assert len(runs) == 2
    for run in runs:  # each run warns once per bad sequence
        assert run.count("SYNTHETIC_train: skipping sequence ghost: frame folder") == 1
        assert run.count(f"SYNTHETIC_train: skipping sequence {short}: ") == 1
        assert run.index("skipping sequence ghost") < run.index("[train] epoch")  # before the first step
    assert f"{short}/groundtruth.txt has 14 boxes but the sequence has 20 frames" in log
    assert "truncated JPEG" in log and any(f"/{name}/" in log for name in broken["others"])

    records = metrics(tmp_path)
    events = tensorboard_events(tmp_path / "tensorboard" / "train" / "hiptrack" / CONFIG / "train")
    board = {(tag, e.step): e.value for tag in ("Data/skipped_sequences", "Data/unreadable_frames")
             for e in events.Scalars(tag)}
    for record in records:
        epoch, train = record["epoch"], record["train"]
        assert train["Data/skipped_sequences"] == 2 and train["Data/unreadable_frames"] >= 1
        logged = summary_values(tmp_path, "train", epoch)
        for key in ("Data/skipped_sequences", "Data/unreadable_frames"):
            assert logged[key] == str(train[key]) and board[(key, epoch)] == train[key]
        assert record["unreadable_samples"] >= 1  # the samples drawn again
    assert [r["epoch"] for r in records] == [1, 2]


def test_broken_sequence_with_on_bad_sequence_error_stops_before_training(train_cli, broken_data_dir, tmp_path,
                                                                          capsys):
    data, broken = broken_data_dir
    assert train_cli.main(cli_args(data, tmp_path, "DATA.ON_BAD_SEQUENCE=error")) == 2
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("error: ")]  # the one line of the error boundary
    assert "SYNTHETIC_train: 2 of " in line and "DATA.ON_BAD_SEQUENCE error" in line
    assert "sequence ghost: frame folder" in line and f"sequence {broken['short']}: " in line
    assert "Traceback" not in err and "[train] epoch" not in err
    assert not list(run_dir(tmp_path).glob("*.pth.tar"))


# ---------------------------------------------------------------------- h. multi-label mode
MULTI_TAGS = ("Loss/classification", "Accuracy", "mAP", "MacroF1")
SOFT_CONF = 0.5


def soft_label_copy(data_dir: Path, out: Path) -> Path:
    """The synthetic labels with occlusion flagged at conf SOFT_CONF in every record (a known soft target)."""
    for path in (data_dir / "synthetic" / "cls_annotations").rglob("*.jsonl"):
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for record in records:
            record["vlm_response"]["occlusion"] = {"flag": 1, "conf": SOFT_CONF}
        target = out / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(json.dumps(r) + "\n" for r in records))
    return out


def test_multi_label_two_stage_training_with_soft_targets_logs_map_and_macro_f1(train_cli, data_dir, tmp_path,
                                                                                 monkeypatch):
    from lib.train.actors.hiptrack_cls import HIPTrackActor
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    compute_losses = HIPTrackActor.compute_losses

    def recording(self, outputs, batch):
        seen.append((batch["search_cls_label"].clone(), batch["search_cls_multi_hot"].clone()))
        return compute_losses(self, outputs, batch)

    monkeypatch.setattr(HIPTrackActor, "compute_losses", recording)
    labels = soft_label_copy(data_dir, tmp_path / "soft_labels")
    pos_weight = "[" + ", ".join(["2.0"] * 10) + "]"
    opts = ("MODEL.CLS_HEAD.MODE=multi", "TRAIN.CLS_SOFT_TARGETS=True", f"TRAIN.CLS_POS_WEIGHT={pos_weight}",
            "TRAIN.TWO_STAGE=True", "TRAIN.STAGE1_EPOCHS=1", "TRAIN.STAGE2_EPOCHS=1", "TRAIN.EPOCH=2",
            f"DATA.TRAIN.CLS_ANN_DIR={labels}", f"DATA.VAL.CLS_ANN_DIR={labels}")
    save_dir = tmp_path / "out"
    assert train_cli.main(cli_args(data_dir, save_dir, *opts, val=True)) == 0

    # the soft targets reached the actor: occlusion at its conf on every labeled frame, other classes 0 / 1
    assert seen
    for frame_labels, targets in seen:
        labeled = targets[frame_labels != IGNORE_INDEX]
        assert len(labeled) and (labeled[:, 0] == SOFT_CONF).all()
        assert set(labeled[:, 1:].unique().tolist()) <= {0.0, 1.0}
    assert [checkpoint(save_dir, e)["stage"] for e in (1, 2)] == [1, 2]

    records = metrics(save_dir)
    tb_dir = save_dir / "tensorboard" / "train" / "hiptrack" / CONFIG
    for split in ("train", "val"):
        events = tensorboard_events(tb_dir / split)
        board = {(tag, e.step): e.value for tag in events.Tags()["scalars"] for e in events.Scalars(tag)}
        for r in records:
            stats = r[split]
            for key in MULTI_TAGS:
                assert math.isfinite(stats[key]) and board[(key, r["epoch"])] == pytest.approx(stats[key], rel=1e-6)
            assert 0 <= stats["mAP"] <= 1 and 0 <= stats["MacroF1"] <= 1
            assert stats["AP/Occlusion"] == 1.0  # a positive in every frame: every ranking is perfect
            assert "confusion" not in stats and not any(k.startswith("Accuracy/") for k in stats)
            assert {k for k in stats if k.startswith("AP/")} <= {k for k, _ in board}
            logged = summary_values(save_dir, split, r["epoch"])
            assert logged["mAP"] == f"{stats['mAP']:.4f}" and logged["MacroF1"] == f"{stats['MacroF1']:.4f}"
        assert "ConfusionMatrix" not in events.Tags()["images"]


def _multi_label_rank(rank: int, init_file: str, rows: list, out_file: str) -> None:
    """One gloo rank of test_multi_label_epoch_metrics_gather_every_rank: reduce this rank's rows."""
    import torch.distributed as dist
    from lib.train.metrics import EpochMetrics
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        metrics = EpochMetrics(3, multi_label=True)
        scores, positives = rows[rank]
        metrics.update({"cls_correct": 1, "cls_labeled": len(scores), "cls_scores": torch.tensor(scores),
                        "cls_positives": torch.tensor(positives).bool()}, batch_size=1)
        out = metrics.reduce(distributed=True, device=torch.device("cpu"))
        if rank == 0:
            Path(out_file).write_text(json.dumps(out))
    finally:
        dist.destroy_process_group()


def test_multi_label_epoch_metrics_gather_every_rank(tmp_path):
    """Two gloo ranks with different frame counts give the numbers of one process holding every frame."""
    from lib.train.metrics import EpochMetrics
    rows = [([[0.9, 0.2, 0.8], [0.6, 0.7, 0.1]], [[1, 0, 1], [0, 1, 0]]),
            ([[0.3, 0.1, 0.05]], [[1, 0, 0]])]
    out_file = tmp_path / "rank0.json"
    torch.multiprocessing.spawn(_multi_label_rank, args=(str(tmp_path / "init"), rows, str(out_file)), nprocs=2)
    single = EpochMetrics(3, multi_label=True)
    single.update({"cls_correct": 2, "cls_labeled": 3,
                   "cls_scores": torch.tensor(rows[0][0] + rows[1][0]),
                   "cls_positives": torch.tensor(rows[0][1] + rows[1][1]).bool()}, batch_size=2)
    expected = single.reduce(distributed=False, device=torch.device("cpu"))
    assert json.loads(out_file.read_text()) == pytest.approx(expected)
    assert expected["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1 + 1) / 3)
