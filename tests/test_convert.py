"""tracking/convert_cls_to_tracking.py: HIPTrack-CLS checkpoint -> plain tracking checkpoint."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_script
from lib.config.hiptrack import config_from_dict, load_config, resolve_experiment_config
from lib.models import build_model
from lib.test.tracker import HIPTrackCLSTracker, HIPTrackTracker
from lib.test.tracker.hiptrack import load_network
from lib.utils.checkpoint import read_checkpoint, save_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / "tracking" / "convert_cls_to_tracking.py"


@pytest.fixture(scope="module")
def convert():
    return load_script(SCRIPT).main


def tiny_checkpoint(path: Path, *opts: str) -> Path:
    """A random-init tiny HIPTrack-CLS checkpoint in the trainer's format."""
    cfg = load_config(resolve_experiment_config("hiptrack_cls_tiny"), opts=list(opts))
    torch.manual_seed(0)
    model = build_model(cfg, training=False)
    return save_checkpoint({"net": model.state_dict(), "epoch": 2, "config": cfg.to_dict()}, path)


@pytest.fixture(scope="module")
def cls_ckpt(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("cls") / "cls.pth.tar")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_plain_tracker_loads_the_output_strictly_and_tracks_identically(convert, cls_ckpt, tmp_path, capsys):
    before = digest(cls_ckpt)
    out = tmp_path / "plain.pth.tar"
    assert convert(["--input", str(cls_ckpt), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    cls_cfg = load_config(resolve_experiment_config("hiptrack_cls_tiny"))
    head_params = sum(p.numel() for p in build_model(cls_cfg, training=False).cls_head.parameters())
    assert "removed 4 cls_head keys" in printed and f"({head_params:,} parameters)" in printed
    assert digest(cls_ckpt) == before

    payload = read_checkpoint(out)
    assert payload["epoch"] == 2 and not any(k.startswith("cls_head.") for k in payload["net"])
    assert config_from_dict(payload["config"]).MODEL.CLS_HEAD.ENABLED is False
    source = read_checkpoint(cls_ckpt)["net"]
    assert set(payload["net"]) == {k for k in source if not k.startswith("cls_head.")}

    plain_cfg = load_config(resolve_experiment_config("hiptrack_tiny"))
    plain = HIPTrackTracker(load_network(plain_cfg, out), plain_cfg)  # strict=True inside
    with_head = HIPTrackCLSTracker(load_network(cls_cfg, cls_ckpt), cls_cfg)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(6)]
    boxes = []
    for tracker in (plain, with_head):
        tracker.initialize(images[0], {"init_bbox": [40, 30, 30, 20]})
        boxes.append([tracker.track(img)["target_bbox"] for img in images[1:]])
    np.testing.assert_allclose(boxes[0], boxes[1], atol=1e-4)


def error_line(capsys) -> str:
    """The one ``error:`` line of a refused conversion (no traceback)."""
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err
    return line


def test_fusion_is_refused(convert, tmp_path, capsys):
    ckpt = tiny_checkpoint(tmp_path / "fusion.pth.tar", "MODEL.CLS_HEAD.FUSION=ADD")
    out = tmp_path / "plain.pth.tar"
    assert convert(["--input", str(ckpt), "--output", str(out)]) == 2
    assert "fusion" in error_line(capsys) and not out.exists()


@pytest.mark.parametrize("stored", [True, "FILM", "GATE"])
def test_fusion_flag_in_stored_config_is_refused(convert, cls_ckpt, tmp_path, stored, capsys):
    payload = read_checkpoint(cls_ckpt)
    payload["config"]["MODEL"]["CLS_HEAD"]["FUSION"] = stored
    ckpt = save_checkpoint(payload, tmp_path / "flagged.pth.tar")
    out = tmp_path / "plain.pth.tar"
    assert convert(["--input", str(ckpt), "--output", str(out)]) == 2
    assert "MODEL.CLS_HEAD.FUSION" in error_line(capsys)
    assert not out.exists()


def test_a_stored_fusion_none_converts(convert, cls_ckpt, tmp_path):
    payload = read_checkpoint(cls_ckpt)
    assert payload["config"]["MODEL"]["CLS_HEAD"]["FUSION"] == "NONE"
    convert(["--input", str(cls_ckpt), "--output", str(tmp_path / "plain.pth.tar")])
    assert (tmp_path / "plain.pth.tar").is_file()


def test_input_is_never_overwritten(convert, cls_ckpt, tmp_path, capsys):
    before = digest(cls_ckpt)
    for argv in (["--output", str(cls_ckpt)], ["--output", str(cls_ckpt), "--overwrite"],
                 ["--output", str(cls_ckpt.parent / "." / cls_ckpt.name), "--overwrite"]):
        assert convert(["--input", str(cls_ckpt), *argv]) == 2
        assert "input" in error_line(capsys)
    assert digest(cls_ckpt) == before


def test_existing_output_needs_overwrite(convert, cls_ckpt, tmp_path, capsys):
    out = tmp_path / "plain.pth.tar"
    out.write_text("keep me")
    assert convert(["--input", str(cls_ckpt), "--output", str(out)]) == 2
    assert "--overwrite" in error_line(capsys)
    assert out.read_text() == "keep me"
    assert convert(["--input", str(cls_ckpt), "--output", str(out), "--overwrite"]) == 0
    assert "net" in read_checkpoint(out)


@pytest.mark.parametrize("case", ["missing", "not_a_checkpoint", "no_head"])
def test_bad_input_is_a_clear_error_and_writes_nothing(convert, tmp_path, case, capsys):
    source = tmp_path / "in.pth.tar"
    expected = {"missing": "not found", "not_a_checkpoint": "not a readable", "no_head": "no cls_head"}[case]
    if case == "not_a_checkpoint":
        source.write_text("hello")
    elif case == "no_head":
        cfg = load_config(resolve_experiment_config("hiptrack_tiny"))
        save_checkpoint({"net": build_model(cfg, training=False).state_dict(), "epoch": 1}, source)
    out = tmp_path / "out.pth.tar"
    assert convert(["--input", str(source), "--output", str(out)]) == 2
    assert expected in error_line(capsys)
    assert not out.exists() and not list(tmp_path.glob(".out.pth.tar*"))


@pytest.mark.parametrize("case", ["a_folder", "through_a_file", "write_fails"])
def test_an_output_that_cannot_be_written_exits_2_before_reading(convert, cls_ckpt, tmp_path, capsys, monkeypatch,
                                                                 case):
    from lib.test.tracker import checkpoint_conversion
    reads = []
    monkeypatch.setattr(checkpoint_conversion, "read_checkpoint", lambda p: reads.append(p) or read_checkpoint(p))
    if case == "a_folder":
        out = tmp_path / "folder"
        out.mkdir()
        expected = f"output {out} is a folder"
    elif case == "through_a_file":
        (tmp_path / "a_file").write_text("")
        out = tmp_path / "a_file" / "plain.pth.tar"  # root may write anywhere: a file as parent fails for anyone
        expected = f"{tmp_path / 'a_file'} is a file, not a folder"
    else:  # e.g. a read-only file system or a full disk, found only when writing
        def no_space(*args, **kwargs):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(checkpoint_conversion, "save_checkpoint", no_space)
        out = tmp_path / "plain.pth.tar"
        expected = f"cannot write {out}: No space left on device"
    assert convert(["--input", str(cls_ckpt), "--output", str(out)]) == 2
    assert expected in error_line(capsys)
    assert reads == ([] if case != "write_fails" else [cls_ckpt])
    assert not (out.is_file() if case != "a_folder" else any(out.iterdir()))
