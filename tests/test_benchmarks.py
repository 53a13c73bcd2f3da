"""The speed scripts in benchmarks/ run as scripts: --help of each, smoke runs on tiny configs.

No timing is asserted (speed figures live in the scripts' output only); the smoke runs check that
each script measures what it says and prints absolute times, in-run ratios and the recorded
figures labelled as such.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_tiny_cfg
from lib.config.hiptrack import load_config, resolve_experiment_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
# script -> words its help must contain (what it measures; kept in step with docs/benchmarks.md)
HELP_WORDS = {
    "bench_model.py": ("COMPONENT", "bench_tracker.py"),
    "bench_tracker.py": ("tracker.track()", "--original", "--banks", "bf16"),
    "bench_train_step.py": ("Trainer.train_epoch", "--keep", "--epoch", "clipping", "--original"),
    "bench_train_loop.py": ("samples per second", "--opts", "data", "backward", "optimizer"),
    "bench_parallel_training.py": ("side by side", "--jobs", "--threads-per-job", "--before"),
    "loop_worker.py": ("--source", "@@ready", "LoopRun"),
    "bench_cls_overhead.py": ("stand-in",),
    "bench_data.py": ("--part",),
    "original_worker.py": ("--original",),
}


def run_script(name: str, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``benchmarks/<name>`` from ``cwd`` (the scripts work from any directory)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], check=False, cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.parametrize("name", sorted(HELP_WORDS))
def test_help(name, tmp_path):
    out = run_script(name, "--help", cwd=tmp_path).stdout
    assert out.startswith("usage:")
    assert "--threads" in out
    for word in HELP_WORDS[name]:
        assert word.lower() in out.lower(), word


def test_tracker_smoke(tmp_path):
    out = run_script("bench_tracker.py", "--config", "hiptrack_tiny", "--banks", "2", "3", "--frames", "1",
                     "--floor", "--ab-opts", "TEST.PACKED_LINEAR=False", cwd=tmp_path).stdout
    assert "tracker.track() on a 640x480 frame" in out
    assert "ours plain fp32 kernels alone / ours plain fp32:" in out
    assert "ours plain bf16 kernels alone / ours plain fp32:" in out
    for precision in ("fp32", "bf16"):  # the A/B of a test-time setting, each tracker against itself
        assert f"ours plain {precision} / ours plain {precision} [TEST.PACKED_LINEAR=False]:" in out
    for bank in (2, 3):
        assert f"bank of {bank} frames, seconds per track():" in out
    assert "ours plain fp32" in out and "ours plain bf16" in out
    assert "ours plain bf16 / ours plain fp32:" in out
    assert "growth with the memory bank" in out
    assert "recorded elsewhere, not a ratio" in out
    assert "0.557 s" in out.split("recorded elsewhere, not a ratio")[1]  # only in the labelled block


def test_tracker_ab_opts_are_test_settings_only(tmp_path):
    result = run_script("bench_tracker.py", "--ab-opts", "MODEL.MAX_MEM=3", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "only TEST.* settings" in result.stderr


def test_tracker_rejects_a_folder_that_is_not_hiptrack(tmp_path):
    result = run_script("bench_tracker.py", "--original", str(tmp_path), cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "not a HIPTrack checkout" in result.stderr


def test_train_step_smoke(tmp_path):
    out = run_script("bench_train_step.py", "--config", "hiptrack_tiny", "--steps", "1", cwd=tmp_path).stdout
    assert "CE keep rate 0.700" in out  # the default --keep, reached at the default epoch
    assert "grad clip" in out
    assert "fp32  median" in out and "amp   median" in out
    assert "amp / fp32:" in out
    assert "recorded elsewhere, not a ratio" in out


def test_train_step_at_epoch_one_keeps_everything(tmp_path):
    """A stated epoch before the CE schedule starts: keep rate 1.0, printed as such."""
    out = run_script("bench_train_step.py", "--config", "hiptrack_tiny", "--steps", "1", "--precision", "fp32",
                     "--epoch", "1", "--opts", "TRAIN.CE_START_EPOCH=5", cwd=tmp_path).stdout
    assert "epoch 1, CE keep rate 1.000" in out


def test_train_loop_smoke(tmp_path):
    out = run_script("bench_train_loop.py", "--sequences", "3", "--frames", "24", "--samples", "4", "--rounds", "1",
                     "--opts", "--opts", "TRAIN.BATCH_SIZE=2", cwd=tmp_path).stdout
    assert "A: hiptrack_cls_quickstart (as is)" in out
    assert "B: hiptrack_cls_quickstart TRAIN.BATCH_SIZE=2" in out
    assert "samples/s" in out
    assert "time: data" in out and "forward" in out and "backward" in out and "optimizer" in out
    assert "B samples/s / A samples/s:" in out


def test_parallel_training_smoke(tmp_path):
    """A, B and, with --before, P: a training that runs the lib of another source tree (a copy here)."""
    before = tmp_path / "before"
    for part in ("lib", "experiments"):  # a checkout: the package and its experiment configs
        shutil.copytree(BENCHMARKS.parent / part, before / part, ignore=shutil.ignore_patterns("__pycache__"))
    out = run_script("bench_parallel_training.py", "--config", "hiptrack_cls_tiny", "--sequences", "3", "--frames",
                     "24", "--samples", "4", "--rounds", "1", "--jobs", "2", "--before", str(before),
                     cwd=tmp_path).stdout
    assert "B: 2 trainings side by side, 1 thread(s) each" in out
    assert f"P: one training as A with the lib of {before.resolve() / 'lib'}" in out
    assert f"A runs {BENCHMARKS.parent / 'lib'}" in out
    assert "samples/s in all" in out and "each training's epoch" in out
    for ratio in ("B samples/s / A samples/s:", "A samples/s / P samples/s:", "B samples/s / P samples/s:"):
        assert ratio in out


def test_parallel_training_needs_two_jobs(tmp_path):
    result = run_script("bench_parallel_training.py", "--jobs", "1", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "side by side needs at least 2" in result.stderr


def test_parallel_training_before_must_be_a_checkout(tmp_path):
    result = run_script("bench_parallel_training.py", "--before", str(tmp_path), cwd=tmp_path, check=False)
    assert result.returncode == 2 and f"--before {tmp_path}: no lib/__init__.py there" in result.stderr


def test_loop_worker_reports_a_bad_source(tmp_path):
    result = run_script("loop_worker.py", "--data", str(tmp_path), "--source", str(tmp_path), cwd=tmp_path,
                        check=False)
    assert result.returncode == 1
    assert result.stdout.strip() == f"@@error --source {tmp_path}: no lib/__init__.py there (not a checkout of this project)"


def test_model_component_smoke(tmp_path):
    out = run_script("bench_model.py", "--config", "hiptrack_tiny", "--frames", "1", cwd=tmp_path).stdout
    assert "COMPONENT timing" in out
    assert "beyond the first frame 0," in out and "beyond the memory writes 0 " in out
    assert "network bf16 / network fp32:" in out


@pytest.fixture
def common(monkeypatch):
    """benchmarks/bench_common.py as a module (registered: its dataclasses look their module up)."""
    spec = importlib.util.spec_from_file_location("bench_common", BENCHMARKS / "bench_common.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_common", module)
    spec.loader.exec_module(module)
    return module


def test_alternation_rotates_and_ratios_pair_rounds(common):
    """Each round starts with the next contestant; ratios pair the same rounds; summaries show the spread."""
    order: list[str] = []
    times = {"a": iter([9.0, 1.0, 2.0, 3.0, 4.0]), "b": iter([9.0, 2.0, 4.0, 6.0, 8.0])}

    def contestant(name):
        def call():
            order.append(name)
            return next(times[name])
        return call

    samples = common.alternate({"a": contestant("a"), "b": contestant("b")}, rounds=4)
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then a-first / b-first rounds
    assert samples["a"].seconds == [1.0, 2.0, 3.0, 4.0]  # the warm-up is not kept
    assert common.paired_ratio(samples["b"], samples["a"]).startswith("b / a: 2.00x (median of 4 paired rounds")
    assert samples["a"].summary() == "median 2.500 s (min 1.000, IQR 1.750-3.250, max 4.000; n 4)"


def test_like_for_like_warning_names_the_differences(common, tmp_path):
    yaml_dir = tmp_path / "experiments" / "hiptrack"
    yaml_dir.mkdir(parents=True)
    (yaml_dir / "orig.yaml").write_text(
        "DATA:\n  SEARCH:\n    SIZE: 384\n  TEMPLATE:\n    SIZE: 192\n"
        "MODEL:\n  BACKBONE:\n    TYPE: vit_base_patch16_224_ce\n    CE_KEEP_RATIO: [0.7, 0.7, 0.7]\n")
    warning = common.like_for_like_warning(make_tiny_cfg(), tmp_path, "orig")
    for difference in ("backbone vit_tiny_test_ce vs vit_base_patch16_224_ce", "search size 128 vs 384",
                       "template size 64 vs 192", "CE keep ratio [0.7, 0.7] vs [0.7, 0.7, 0.7]"):
        assert difference in warning
    vit_b = load_config(resolve_experiment_config("hiptrack_got"))
    assert common.like_for_like_warning(vit_b, tmp_path, "orig") is None


def test_kernel_floor_records_every_kernel_call_and_counts_its_flops(common):
    """Each Linear / Conv2d call and attention block of one forward is recorded with its shape and layout,
    with the FLOP of that shape; a pass reruns them all and reports seconds by kind."""
    import torch
    from lib.models.layers.attn_blocks import Attention

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1, stride=2)
            self.attn = Attention(8, num_heads=2)
            self.fc = torch.nn.Linear(8, 5)

        def forward(self, x):
            x = self.conv(x)                                   # (2, 8, 2, 2)
            tokens = x.flatten(2).transpose(1, 2)              # (2, 4, 8)
            return self.fc(self.attn(tokens)[0]), self.fc(tokens[:1])

    net = Net()
    floor = common.KernelFloor(net, lambda: net(torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)))
    assert [kind for kind, _, _ in floor.calls] == ["convolution", "attention", "linear", "linear", "linear", "linear"]
    conv_input = floor.calls[0][2][0]
    assert conv_input.shape == (2, 3, 4, 4) and conv_input.is_contiguous(memory_format=torch.channels_last)
    assert [tuple(q.shape) for q in floor.calls[1][2]] == [(2, 2, 4, 4)] * 3  # q, k, v per head
    assert floor.flops["convolution"] == 2 * 2 * 8 * 4 * 3 * 9       # batch, out channels, 2x2 outputs, 3x3x3
    assert floor.flops["attention"] == 4 * 2 * 2 * 4 * 4 * 4          # batch, heads, tokens^2, head dim
    # qkv 8->24 and proj 8->8 on 2x4 tokens, fc 8->5 on 2x4 and on 1x4 tokens
    assert floor.flops["linear"] == 2 * (8 * 8 * 24 + 8 * 8 * 8 + 8 * 8 * 5 + 4 * 8 * 5)
    seconds = floor()
    assert set(floor.last) == {"convolution", "attention", "linear"}
    assert seconds == pytest.approx(sum(floor.last.values())) and seconds > 0


def test_kernel_floor_of_a_bf16_network_reruns_under_autocast(common):
    """A bf16 tracker's network holds bf16 weights and gets fp32 inputs under autocast: the floor reruns
    its kernels the same way (no dtype mismatch), the attention kernel on bf16 inputs."""
    import torch
    from lib.models.layers.attn_blocks import Attention
    from lib.utils.precision import autocast_weight_copy

    net = autocast_weight_copy(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.Flatten(2)), torch.bfloat16)
    attn = autocast_weight_copy(Attention(8, num_heads=2), torch.bfloat16)

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            attn(net(torch.randn(1, 3, 2, 2)).transpose(1, 2))

    floor = common.KernelFloor(torch.nn.ModuleList([net, attn]), run, autocast=torch.bfloat16)
    assert [kind for kind, _, _ in floor.calls] == ["convolution", "attention", "linear", "linear"]
    assert floor.calls[0][2][0].dtype == torch.float32  # the conv's input as recorded: fp32, cast by autocast
    assert {q.dtype for q in floor.calls[1][2]} == {torch.bfloat16}
    assert floor() > 0
