"""Checkpoint files: atomic writing, safe reading of released formats, pretrained initialisation."""
from __future__ import annotations

import collections
import logging
import os
import random
import re
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

import lib.models.hiptrack.pretrained as pretrained
from lib.config.hiptrack import EXPERIMENTS_DIR, load_config
from lib.models.hiptrack.hiptrack import HIPTrack, build_hiptrack
from lib.models.hiptrack.pretrained import PRETRAINED_DIR_ENV, load_pretrained, resolve_pretrained_path
from lib.models.hiptrack.vit_ce import build_vit_ce
from lib.utils.checkpoint import (CheckpointError, checkpoint_epoch, extract_state_dict, file_sha256, read_checkpoint,
                                  save_checkpoint)
from tests.reference_data import deterministic_state_dict

TINY_YAML = EXPERIMENTS_DIR / "hiptrack" / "hiptrack_tiny.yaml"
TINY_DIM, TEMPLATE_GRID, SEARCH_GRID = 64, 4, 8  # vit_tiny_test_ce with 64 / 128 pixel crops
HIP_PREFIXES = ("HIP.", "key_proj.", "key_comp.", "searchRegionFusion.")


# ----------------------------------------------------------------------------- helpers
class NotPlainData:
    """An object a checkpoint must not hold (weights-only loading refuses it)."""


def tiny_model(seed: int = 0, **opts: str) -> HIPTrack:
    torch.manual_seed(seed)
    cfg = load_config(TINY_YAML, opts=[f"{k}={v}" for k, v in opts.items()])
    return build_hiptrack(cfg, training=False)


def tiny_config(**opts: str):
    return load_config(TINY_YAML, opts=[f"{k}={v}" for k, v in opts.items()])


def timm_vit_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A bare timm ViT state dict of the tiny backbone's size (genuine timm key names, with head)."""
    torch.manual_seed(seed)
    vit = VisionTransformer(img_size=224, patch_size=16, embed_dim=TINY_DIM, depth=4, num_heads=4, num_classes=10)
    state = {k: v.clone() for k, v in vit.state_dict().items()}
    state["pos_embed"] = torch.randn_like(state["pos_embed"])  # timm inits it small; make resampling visible
    state["cls_token"] = torch.randn_like(state["cls_token"])
    return state


def mae_decoder_state() -> dict[str, torch.Tensor]:
    """Decoder entries of a full MAE checkpoint (unused by a tracker)."""
    g = torch.Generator().manual_seed(7)
    return {
        "mask_token": torch.randn(1, 1, 32, generator=g),
        "decoder_embed.weight": torch.randn(32, TINY_DIM, generator=g),
        "decoder_embed.bias": torch.randn(32, generator=g),
        "decoder_pos_embed": torch.randn(1, 197, 32, generator=g),
        "decoder_blocks.0.norm1.weight": torch.randn(32, generator=g),
        "decoder_norm.weight": torch.randn(32, generator=g),
        "decoder_pred.weight": torch.randn(768, 32, generator=g),
    }


def bicubic_grid(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """Reference resampling of a (1, g*g, C) grid embedding, as the original ``finetune_track``."""
    old = int(pos.shape[1] ** 0.5)
    x = pos.transpose(1, 2).reshape(1, pos.shape[-1], old, old)
    x = F.interpolate(x, size=(grid, grid), mode="bicubic", align_corners=False)
    return x.flatten(2).transpose(1, 2)


def fake_class(monkeypatch, module: str, qualname: str, **attrs) -> type:
    """A throwaway class pickled as ``module.qualname``, its module registered in sys.modules."""
    mod = types.ModuleType(module)
    cls = type(qualname, (), attrs)
    cls.__module__, cls.__qualname__ = module, qualname
    setattr(mod, qualname, cls)
    monkeypatch.setitem(sys.modules, module, mod)
    return cls


def trainer_checkpoint(monkeypatch, net: dict[str, torch.Tensor]) -> dict:
    """A checkpoint as the original OSTrack / HIPTrack LTR trainer saves it."""
    Settings = fake_class(monkeypatch, "lib.train.admin.settings", "Settings")
    EnvironmentSettings = fake_class(monkeypatch, "lib.train.admin.local", "EnvironmentSettings")
    AverageMeter = fake_class(monkeypatch, "lib.train.admin.stats", "AverageMeter")
    settings = Settings()
    settings.script_name, settings.config_name = "hiptrack", "hiptrack"
    settings.device = torch.device("cpu")
    settings.search_area_factor = {"template": 2.0, "search": 5.0}
    settings.env = EnvironmentSettings()
    settings.env.workspace_dir = "/data/workspace"
    meter = AverageMeter()
    meter.val, meter.avg, meter.sum, meter.count = 0.25, 0.5, 5.0, 10
    first = next(iter(net.values()))
    return {
        "epoch": 100,
        "actor_type": "HIPTrackActor",
        "net_type": "HIPTrack",
        "net": net,
        "net_info": None,
        "constructor": None,
        "optimizer": {"state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros_like(first)}},
                      "param_groups": [{"lr": 1e-4, "weight_decay": 1e-4, "params": [0]}]},
        "stats": collections.OrderedDict(train=collections.OrderedDict([("Loss/total", meter)])),
        "settings": settings,
    }


# ----------------------------------------------------------------------------- writing
def test_save_checkpoint_is_atomic_and_weights_only(tmp_path):
    path = tmp_path / "run" / "checkpoints" / "HIPTrack_ep0001.pth.tar"
    first = {"net": {"w": torch.arange(6.0).view(2, 3)}, "epoch": 1, "config": {"MODEL": {"MAX_MEM": 8}}}
    assert save_checkpoint(first, path) == path
    loaded = torch.load(path, weights_only=True)
    assert torch.equal(loaded["net"]["w"], first["net"]["w"]) and loaded["config"] == first["config"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    save_checkpoint({"net": {"w": torch.ones(2)}, "epoch": 2}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 2
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_save_checkpoint_failure_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pth"
    save_checkpoint({"net": {"w": torch.zeros(3)}, "epoch": 1}, path)
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint({"net": {"w": torch.ones(3)}, "epoch": 2}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_save_checkpoint_refuses_objects(tmp_path):
    path = tmp_path / "ckpt.pth"
    save_checkpoint({"epoch": 1}, path)
    with pytest.raises(CheckpointError, match="NotPlainData"):
        save_checkpoint({"epoch": 2, "settings": NotPlainData()}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# ----------------------------------------------------------------------------- reading
def test_original_trainer_checkpoint_loads_strictly_into_vit_b(tmp_path, monkeypatch):
    net = deterministic_state_dict()
    path = tmp_path / "HIPTrack_got10k.pth.tar"
    torch.save(trainer_checkpoint(monkeypatch, net), path)
    # what makes this format hard to read safely: torch.load(weights_only=True) refuses these
    assert sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path))) == [
        "lib.train.admin.local.EnvironmentSettings", "lib.train.admin.settings.Settings",
        "lib.train.admin.stats.AverageMeter"]

    obj = read_checkpoint(path)
    assert obj["epoch"] == 100 and obj["net_type"] == "HIPTrack"
    assert obj["optimizer"]["param_groups"][0]["lr"] == 1e-4
    settings, meter = obj["settings"], obj["stats"]["train"]["Loss/total"]
    assert (type(settings).__module__, type(settings).__qualname__) == ("lib.train.admin.settings", "Settings")
    assert type(settings) is not sys.modules["lib.train.admin.settings"].Settings  # a placeholder, not the class
    assert settings._state["search_area_factor"] == {"template": 2.0, "search": 5.0}
    assert settings._state["env"]._state["workspace_dir"] == "/data/workspace"
    assert type(meter).__qualname__ == "AverageMeter" and meter._state["avg"] == 0.5

    state, kind = extract_state_dict(obj, path)
    assert kind == "tracker" and len(state) == 373
    model = HIPTrack(build_vit_ce("vit_base_patch16_224_ce", 192, 384, [3, 6, 9], [0.7] * 3))
    model.load_state_dict(state, strict=True)
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in net.items())
    path.unlink()  # 350 MB; pytest keeps the tmp folders of recent runs


def os_system_payload(marker: Path):
    return os.system, (f"touch {marker}",)


def eval_payload(marker: Path):
    return eval, (f"__import__('pathlib').Path({str(marker)!r}).touch()",)


def subprocess_payload(marker: Path):
    return subprocess.call, (["touch", str(marker)],)


@pytest.mark.parametrize("payload", [os_system_payload, eval_payload, subprocess_payload])
def test_read_checkpoint_refuses_code_in_the_pickle(tmp_path, monkeypatch, payload):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return payload(marker)

    ckpt = trainer_checkpoint(monkeypatch, {"w": torch.ones(2)})  # the placeholder path must refuse it too
    ckpt["constructor"] = Exploit()
    path = tmp_path / "evil.pth.tar"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth\.tar.*refusing"):
        read_checkpoint(path)
    assert not marker.exists()


def test_read_checkpoint_never_calls_pickled_functions(tmp_path, monkeypatch):
    calls = []
    hooks = types.ModuleType("lib.train.admin.hooks")

    def on_load(*args):
        calls.append(args)
        return "ran"

    on_load.__module__, on_load.__qualname__ = hooks.__name__, "on_load"
    hooks.on_load = on_load
    monkeypatch.setitem(sys.modules, hooks.__name__, hooks)

    class Hook:
        def __reduce__(self):
            return on_load, ("payload",)

    path = tmp_path / "hook.pth"
    torch.save({"net": {"w": torch.ones(2)}, "hook": Hook()}, path)
    obj = read_checkpoint(path)
    assert calls == []
    assert obj["hook"] != "ran" and type(obj["hook"]).__qualname__ == "on_load"
    assert torch.equal(obj["net"]["w"], torch.ones(2))


def test_legacy_format_files(tmp_path, monkeypatch):
    plain = tmp_path / "legacy.pth"
    torch.save({"net": {"w": torch.ones(2)}}, plain, _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(plain)["net"]["w"], torch.ones(2))
    with_objects = tmp_path / "legacy_trainer.pth.tar"
    torch.save(trainer_checkpoint(monkeypatch, {"w": torch.ones(2)}), with_objects, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy-format.*lib.train.admin"):
        read_checkpoint(with_objects)


class LocalOnlyObject:
    """A class of this test module: a pickle holding one is not plain data."""

    def __init__(self):
        self.value = 3


def test_zip_checkpoint_with_a_test_class_loads_it_as_an_inert_placeholder(tmp_path):
    path = tmp_path / "with_object.pth"
    torch.save({"net": {"w": torch.ones(2)}, "meta": LocalOnlyObject()}, path)
    obj = read_checkpoint(path)
    assert not isinstance(obj["meta"], LocalOnlyObject) and repr(obj["meta"]).startswith("<placeholder ")
    assert obj["meta"]._state == {"value": 3}


@pytest.mark.parametrize("kind", ["test_class", "os_system"])
def test_legacy_pickle_with_objects_is_refused_as_not_plain_data(tmp_path, kind):
    """Never "corrupt or truncated?", never torch's advice to load with weights_only=False."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os_system_payload(marker)

    payload = LocalOnlyObject() if kind == "test_class" else Exploit()
    path = tmp_path / f"legacy_{kind}.pth.tar"
    torch.save({"net": {"w": torch.ones(2)}, "extra": payload}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path} was refused: it is a legacy-format (torch < 1.6) checkpoint whose pickle "
                              "holds objects that are not plain data (")
    named = "LocalOnlyObject" if kind == "test_class" else ".system"  # torch names os.system by its module posix
    assert re.search(rf"not plain data \([\w.]*{re.escape(named)}\)", message), message
    for advice in ("weights_only", "corrupt", "truncated", "trust", "safe_globals"):
        assert advice not in message
    assert not marker.exists()


def test_checkpoint_epoch_and_digest(tmp_path):
    path = save_checkpoint({"net": {"w": torch.ones(3)}, "epoch": 12}, tmp_path / "ep.pth.tar")
    assert checkpoint_epoch(path) == 12
    assert checkpoint_epoch(save_checkpoint({"net": {"w": torch.ones(3)}}, tmp_path / "no_epoch.pth")) is None
    import hashlib
    assert file_sha256(path, chunk_bytes=7) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_read_checkpoint_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "HIPTrack_got10k.pth.tar"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        read_checkpoint(path)


def random_blobs(count: int = 40) -> list[bytes]:
    blobs = []
    for seed in range(count):
        r = random.Random(seed)
        blobs.append(bytes(r.randrange(256) for _ in range(r.randrange(1, 3000))))
    return blobs


def test_read_checkpoint_rejects_corrupt_files(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"net": {"w": torch.randn(64, 64)}, "epoch": 3}, good)
    data = good.read_bytes()
    cases = {"notes.txt": b"epoch: 3\nthis is not a checkpoint\n" * 20, "truncated.pth": data[: len(data) // 2],
             "empty.pth": b"", "weights.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{broken"}
    cases.update({f"random{i}.pth": blob for i, blob in enumerate(random_blobs())})
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=re.escape(str(path))):
            read_checkpoint(path)
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path))):
        read_checkpoint(tmp_path)  # a folder


@pytest.mark.parametrize("content, message", [
    ({"epoch": 3, "settings": {"lr": 1e-4}}, "no state dict of tensors"),
    ({"net": {"lr": 1e-4}, "epoch": 3}, "no state dict of tensors"),
    ({"net": {}}, "no state dict of tensors"),
    ([torch.ones(2), torch.zeros(2)], "holds a list"),
])
def test_checkpoint_without_state_dict_is_an_error(tmp_path, content, message):
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        extract_state_dict(read_checkpoint(path), path)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_pretrained(tiny_model(), path)


# ----------------------------------------------------------------------------- pretrained weights
@pytest.mark.parametrize("wrapped", [True, False], ids=["net", "bare"])
def test_ddp_prefixed_tracker_checkpoint(tmp_path, wrapped):
    source = tiny_model(seed=1).state_dict()
    prefixed = {f"module.{k}": v for k, v in source.items()}
    path = tmp_path / "ddp.pth.tar"
    torch.save({"net": prefixed, "epoch": 5} if wrapped else prefixed, path)
    model = tiny_model(seed=2)
    report = load_pretrained(model, path)
    assert (report.kind, report.missing, report.unexpected, report.resampled) == ("tracker", [], [], [])
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in source.items())


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_vit_state_dict(tmp_path, suffix, caplog):
    state = timm_vit_state()
    path = tmp_path / f"vit_tiny{suffix}"
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    model = tiny_model()
    untouched = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    with caplog.at_level(logging.INFO, logger="lib.models.hiptrack.pretrained"):
        report = load_pretrained(model, path)
    assert report.kind == "vit"
    assert sorted(report.unexpected) == ["head.bias", "head.weight"]
    assert sorted(report.missing) == ["backbone.temporal_pos_embed_x", "backbone.temporal_pos_embed_z"]
    own = model.state_dict()
    for name in ("patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.3.attn.qkv.weight",
                 "blocks.0.mlp.fc2.bias", "norm.weight"):
        assert torch.equal(own[f"backbone.{name}"], state[name]), name
    assert all(torch.equal(own[k], v) for k, v in untouched.items())  # heads keep their init
    assert "2 parameters not in the checkpoint" in caplog.text and "2 checkpoint entries not used" in caplog.text


def test_mae_checkpoint(tmp_path, caplog):
    encoder = {k: v for k, v in timm_vit_state(seed=3).items() if not k.startswith("head.")}
    decoder = mae_decoder_state()
    path = tmp_path / "mae_pretrain_vit_tiny.pth"
    torch.save({"model": {**encoder, **decoder}}, path)
    model = tiny_model()
    with caplog.at_level(logging.WARNING, logger="lib.models.hiptrack.pretrained"):
        report = load_pretrained(model, path)
    assert report.kind == "vit"
    assert sorted(report.unexpected) == sorted(decoder)
    assert sorted(report.missing) == ["backbone.temporal_pos_embed_x", "backbone.temporal_pos_embed_z"]
    assert {"backbone.pos_embed_z", "backbone.pos_embed_x"} <= set(report.resampled)
    backbone = model.backbone
    assert torch.equal(backbone.blocks[1].attn.proj.weight, encoder["blocks.1.attn.proj.weight"])
    assert torch.equal(backbone.pos_embed, encoder["pos_embed"])
    patch_pos = encoder["pos_embed"][:, 1:]  # drop the class-token slot: a 14 x 14 grid
    assert backbone.pos_embed_z.shape == (1, TEMPLATE_GRID ** 2, TINY_DIM)
    assert backbone.pos_embed_x.shape == (1, SEARCH_GRID ** 2, TINY_DIM)
    torch.testing.assert_close(backbone.pos_embed_z.data, bicubic_grid(patch_pos, TEMPLATE_GRID), rtol=0, atol=1e-6)
    torch.testing.assert_close(backbone.pos_embed_x.data, bicubic_grid(patch_pos, SEARCH_GRID), rtol=0, atol=1e-6)
    assert "2 parameters not in the checkpoint" in caplog.text
    assert f"{len(decoder)} checkpoint entries not used" in caplog.text and "decoder_embed" in caplog.text


def test_ostrack_checkpoint_of_another_search_size(tmp_path, caplog):
    torch.manual_seed(4)
    source = HIPTrack(build_vit_ce("vit_tiny_test_ce", 64, 256, [1, 2], [0.7, 0.7]), head_channels=32, key_dim=16)
    net = {k: v for k, v in source.state_dict().items() if k.startswith(("backbone.", "box_head."))}
    assert net["backbone.pos_embed_x"].shape == (1, 16 * 16, TINY_DIM)
    path = tmp_path / "OSTrack_ep0300.pth.tar"
    torch.save({"net": net, "epoch": 300}, path)
    model = tiny_model()
    with caplog.at_level(logging.WARNING, logger="lib.models.hiptrack.pretrained"):
        report = load_pretrained(model, path)
    own = model.state_dict()
    assert report.kind == "tracker" and report.unexpected == []
    assert report.resampled == ["backbone.pos_embed_x"]
    # BatchNorm fills a missing num_batches_tracked itself and does not report it
    hip_keys = sorted(k for k in own if k.startswith(HIP_PREFIXES) and not k.endswith("num_batches_tracked"))
    assert sorted(report.missing) == hip_keys
    assert f"{len(hip_keys)} parameters not in the checkpoint" in caplog.text
    torch.testing.assert_close(own["backbone.pos_embed_x"], bicubic_grid(net["backbone.pos_embed_x"], SEARCH_GRID),
                               rtol=0, atol=1e-6)
    assert all(torch.equal(own[k], v) for k, v in net.items() if k != "backbone.pos_embed_x")


@pytest.mark.parametrize("name, shape", [
    ("backbone.blocks.0.attn.qkv.weight", (96, TINY_DIM)),
    ("box_head.conv1_ctr.0.weight", (16, TINY_DIM, 3, 3)),
    ("backbone.pos_embed_x", (1, SEARCH_GRID ** 2, 32)),  # other width: resampling cannot fix it
])
def test_unfixable_shape_mismatch_names_the_parameter(tmp_path, name, shape):
    net = tiny_model(seed=1).state_dict()
    net[name] = torch.zeros(shape)
    path = tmp_path / "other_arch.pth.tar"
    torch.save({"net": net}, path)
    with pytest.raises(CheckpointError, match=f"{re.escape(str(path))}.*{re.escape(name)}"):
        load_pretrained(tiny_model(), path)


def test_vit_of_another_width_is_an_error(tmp_path):
    state = {k: torch.zeros(v.shape[:-1] + (32,)) if k in ("cls_token", "pos_embed") else v
             for k, v in timm_vit_state().items()}
    path = tmp_path / "vit_small.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match=r"backbone\.(cls_token|pos_embed)"):
        load_pretrained(tiny_model(), path)


# ----------------------------------------------------------------------------- finding files
@pytest.fixture
def weight_dirs(tmp_path, monkeypatch):
    """An empty working directory, $HIPTRACK_PRETRAINED_DIR and a stand-in for <repo>/pretrained."""
    env_dir, repo_dir, cwd = tmp_path / "env_weights", tmp_path / "repo_pretrained", tmp_path / "cwd"
    for d in (env_dir, repo_dir, cwd):
        d.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(env_dir))
    monkeypatch.setattr(pretrained, "REPO_PRETRAINED_DIR", repo_dir)
    return env_dir, repo_dir


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    return path


def test_resolve_existing_path(weight_dirs, tmp_path):
    path = touch(tmp_path / "elsewhere" / "mae_pretrain_vit_base.pth")
    assert resolve_pretrained_path(path) == path
    assert resolve_pretrained_path(str(path)) == path


def test_resolve_name_in_env_and_repo_folders(weight_dirs):
    env_dir, repo_dir = weight_dirs
    in_repo = touch(repo_dir / "mae_pretrain_vit_base.pth")
    assert resolve_pretrained_path("mae_pretrain_vit_base.pth") == in_repo
    in_env = touch(env_dir / "mae_pretrain_vit_base.pth")
    assert resolve_pretrained_path("mae_pretrain_vit_base.pth") == in_env  # the env folder comes first
    nested = touch(env_dir / "HIPTrack" / "HIPTrack_got10k.pth.tar")
    assert resolve_pretrained_path("HIPTrack_got10k.pth.tar") == nested
    assert resolve_pretrained_path("HIPTrack/HIPTrack_got10k.pth.tar") == nested
    nested_repo = touch(repo_dir / "DropTrack" / "DropTrack_k700_800E_alldata.pth.tar")
    assert resolve_pretrained_path("DropTrack_k700_800E_alldata.pth.tar") == nested_repo


def test_resolve_missing_lists_where_it_looked(weight_dirs, tmp_path):
    env_dir, repo_dir = weight_dirs
    with pytest.raises(FileNotFoundError) as info:
        resolve_pretrained_path("HIPTrack_all_data.pth.tar")
    message = str(info.value)
    assert "HIPTrack_all_data.pth.tar" in message and str(env_dir) in message and str(repo_dir) in message
    assert PRETRAINED_DIR_ENV in message
    touch(env_dir / "HIPTrack_all_data.pth.tar")
    with pytest.raises(FileNotFoundError):  # an absolute path means that file, not a namesake
        resolve_pretrained_path(tmp_path / "gone" / "HIPTrack_all_data.pth.tar")


# ----------------------------------------------------------------------------- building
def test_build_hiptrack_loads_pretrain_file_only_for_training(tmp_path, weight_dirs):
    env_dir, _ = weight_dirs
    source = tiny_model(seed=1).state_dict()
    save_checkpoint({"net": source, "epoch": 2}, env_dir / "HIPTrack" / "tiny_tracker.pth.tar")
    torch.manual_seed(2)
    trained = build_hiptrack(tiny_config(**{"MODEL.PRETRAIN_FILE": "tiny_tracker.pth.tar"}), training=True)
    own = trained.state_dict()
    assert all(torch.equal(own[k], v) for k, v in source.items())
    torch.manual_seed(2)
    tested = build_hiptrack(tiny_config(**{"MODEL.PRETRAIN_FILE": str(env_dir / "HIPTrack" / "tiny_tracker.pth.tar")}),
                            training=False)
    assert not torch.equal(tested.box_head.conv5_ctr.weight, source["box_head.conv5_ctr.weight"])
    assert not torch.equal(tested.backbone.blocks[0].attn.qkv.weight, source["backbone.blocks.0.attn.qkv.weight"])


def test_memory_encoder_from_torchvision_resnet18(tmp_path):
    torch.manual_seed(5)
    resnet = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(resnet, path)
    model = build_hiptrack(tiny_config(**{"MODEL.HIP.ENCODER_PRETRAINED": str(path)}), training=True)
    encoder = model.HIP.encoder
    assert torch.equal(encoder.conv1.weight[:, :3], resnet["conv1.weight"])
    assert encoder.conv1.weight[:, 3].abs().sum() > 0  # the mask channel gets its own init
    assert torch.equal(encoder.layer1[0].conv1.weight, resnet["layer1.0.conv1.weight"])
    assert torch.equal(encoder.layer2[0].downsample[0].weight, resnet["layer2.0.downsample.0.weight"])
    assert torch.equal(encoder.layer3[1].bn2.running_var, resnet["layer3.1.bn2.running_var"])
