"""The label probe (lib.pipeline.label_probe, tracking/probe_cls_labels.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_script
from lib.pipeline.label_probe import CropProbe, add_to_confusion, score, train_probe, verdict
from lib.synthetic import generate_dataset
from lib.challenges import IGNORE_INDEX

REPO = Path(__file__).resolve().parents[1]


class _Epochs:
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


class FakeLoader:
    """Batches shaped like the training pipeline's; the label is 0 for dark search crops, 1 for bright ones."""

    def __init__(self, batches: int, seed: int, unlabeled_every: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.dataset, self.sampler = _Epochs(), None
        self.batches = []
        for i in range(batches):
            labels = torch.randint(0, 2, (4, 2), generator=g)
            search = torch.randn(4, 2, 3, 32, 32, generator=g) * 0.5 + (labels * 2.0 - 1.0)[..., None, None, None]
            if unlabeled_every and i % unlabeled_every == 0:
                labels[:, 0] = IGNORE_INDEX
            self.batches.append({"template_images": torch.randn(4, 1, 3, 16, 16, generator=g),
                                 "search_images": search, "search_cls_label": labels})

    def __iter__(self):
        return iter(self.batches)


def test_probe_maps_search_and_template_to_logits():
    model = CropProbe(num_classes=10)
    assert model(torch.zeros(3, 3, 128, 128), torch.zeros(3, 3, 64, 64)).shape == (3, 10)


def test_confusion_counts_labeled_frames_only():
    confusion = np.zeros((3, 3), dtype=np.int64)
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    add_to_confusion(confusion, logits, torch.tensor([0, 2, IGNORE_INDEX, 1]))
    assert confusion.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 0]]


def test_score_uses_the_training_majority_class_and_skips_absent_classes():
    train = np.array([[2, 0, 0], [0, 1, 0], [0, 0, 7]])       # class 2 is the training majority
    held_out = np.array([[3, 1, 0], [0, 0, 0], [2, 0, 4]])    # class 1 absent from the held-out split
    s = score(8, train, held_out)
    assert (s.majority_class, s.labeled) == (2, 10)
    assert s.accuracy == pytest.approx(0.7) and s.majority_accuracy == pytest.approx(0.6)
    assert s.margin == pytest.approx(0.1) and s.train_accuracy == pytest.approx(1.0)
    assert s.recall == [pytest.approx(0.75), None, pytest.approx(4 / 6)]
    assert "learnable" in verdict(s, 0.05) and "does not beat" in verdict(s, 0.2)
    with pytest.raises(ValueError, match="no labeled frames"):
        score(1, train, np.zeros((3, 3), dtype=np.int64))


def test_probe_learns_a_visible_label_and_scores_the_same_held_out_crops():
    torch.manual_seed(0)
    train, held_out = FakeLoader(24, seed=1, unlabeled_every=3), FakeLoader(6, seed=2)
    scores = train_probe(train, held_out, num_classes=2, epochs=3, device=torch.device("cpu"), eval_interval=2)
    assert [s.epoch for s in scores] == [2, 3]
    assert train.dataset.epochs == [1, 2, 3] and held_out.dataset.epochs == [0, 0]
    assert scores[-1].labeled == 48
    assert scores[-1].accuracy > 0.9 and scores[-1].margin > 0.3


def test_probe_refuses_a_split_without_labels():
    unlabeled = FakeLoader(2, seed=3)
    for batch in unlabeled.batches:
        batch["search_cls_label"][:] = IGNORE_INDEX
    with pytest.raises(ValueError, match="DATA.TRAIN.CLS_ANN_DIR"):
        train_probe(unlabeled, FakeLoader(2, seed=4), 2, 1, torch.device("cpu"))


@pytest.fixture(scope="module")
def probe_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("probe_data")
    generate_dataset(root, sequences=4, frames=20, seed=0, test_fraction=0.5)
    return root


def _probe_args(data: Path, *extra: str) -> list[str]:
    return ["--config", "hiptrack_cls_quickstart", "--dataset_dir", f"synthetic={data}", "--epochs", "2",
            "--eval_interval", "1", "--held_out_samples", "4", *extra,
            "--opts", "DATA.TRAIN.SAMPLE_PER_EPOCH=8", "DATA.MIN_SEQUENCE_LENGTH=10", "TRAIN.BATCH_SIZE=4"]


def test_cli_runs_on_the_synthetic_data_and_writes_its_scores(probe_data, tmp_path):
    main = load_script(REPO / "tracking" / "probe_cls_labels.py").main
    out = tmp_path / "probe.json"
    rc = main(_probe_args(probe_data, "--json", str(out)) + [f"DATA.TRAIN.CLS_ANN_DIR={probe_data / 'cls_annotations'}"])
    record = json.loads(out.read_text())
    assert rc == (0 if max(s["margin"] for s in record["scores"]) >= 0.05 else 3)
    assert [s["epoch"] for s in record["scores"]] == [1, 2]
    assert all(s["labeled"] == 8 for s in record["scores"])  # 4 held-out samples x 2 search frames
    assert np.array(record["scores"][0]["confusion"]).shape == (10, 10)


def test_cli_without_labels_is_a_clear_input_error(probe_data, tmp_path, capsys):
    main = load_script(REPO / "tracking" / "probe_cls_labels.py").main
    assert main(_probe_args(probe_data)) == 2
    err = capsys.readouterr().err
    assert "error: DATA.TRAIN.CLS_ANN_DIR is empty" in err and "Traceback" not in err
    assert main(_probe_args(tmp_path / "missing") + ["DATA.TRAIN.CLS_ANN_DIR=/nowhere"]) == 2
