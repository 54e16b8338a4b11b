"""An unreadable image in the middle of a REFER training set: one line naming the file and the sample
index (also from a DataLoader worker), or with ``data.skip_unreadable=true`` the sample skipped and counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from dcmfnet.data.base import collate_referring
from dcmfnet.data.refer import ReferDataset, UnreadableImageError
from dcmfnet.data.transforms import ReferringTransform
from tests.dcmfnet.fixtures_refer import make_refer_fixture
from tests.dcmfnet.tiny_run import CPU_CONFIG, TINY, dcmfnet_command


@pytest.fixture()
def broken_set(tmp_path: Path) -> tuple[Path, Path, list[int]]:
    """A REFER fixture whose second train image is truncated; the root, that file and its sample indices."""
    root = tmp_path / "refer"
    make_refer_fixture(root)
    train = ReferDataset(root=root, dataset="refcoco", split="train")
    paths = [train.image_path(i) for i in range(len(train))]
    victim = sorted(set(paths))[1]
    victim.write_bytes(victim.read_bytes()[:200])  # a JPEG cut short: the header reads, the pixels do not
    return root, victim, [i for i, path in enumerate(paths) if path == victim]


def test_unreadable_image_names_file_and_sample(broken_set: tuple[Path, Path, list[int]]) -> None:
    root, victim, indices = broken_set
    train = ReferDataset(root=root, dataset="refcoco", split="train")
    with pytest.raises(UnreadableImageError) as caught:
        train.raw(indices[0])
    message = str(caught.value)
    assert message.startswith(f"cannot read image {victim} (sample {indices[0]} of refcoco train, ref ")
    assert "data.skip_unreadable=true" in message and "\n" not in message
    assert isinstance(caught.value, OSError)  # callers that catch OSError still do


def test_a_worker_reports_the_file_in_one_line(broken_set: tuple[Path, Path, list[int]]) -> None:
    root, victim, indices = broken_set
    train = ReferDataset(root=root, dataset="refcoco", split="train", transform=ReferringTransform(size=32))
    loader = DataLoader(train, batch_size=len(train), num_workers=1, collate_fn=collate_referring)
    with pytest.raises(UnreadableImageError) as caught:
        next(iter(loader))
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message, message
    assert message.startswith(f"cannot read image {victim} (sample {indices[0]} of refcoco train")


def test_skip_unreadable_replaces_and_counts(
    broken_set: tuple[Path, Path, list[int]], capsys: pytest.CaptureFixture[str]
) -> None:
    root, victim, indices = broken_set
    train = ReferDataset(root=root, dataset="refcoco", split="train", skip_unreadable=True)
    items = [train[i] for i in range(len(train))]
    assert all(item["index"] not in indices for item in items)  # the next readable sample stands in
    assert train.unreadable == set(indices)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(indices)
    assert lines[-1].startswith(f"skipped unreadable sample ({len(indices)} so far in this process): ")
    assert str(victim) in lines[-1]


@pytest.mark.slow
def test_training_stops_in_one_line_or_skips(
    broken_set: tuple[Path, Path, list[int]], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Through ``python -m dcmfnet train`` with a DataLoader worker (its stderr is captured at the descriptor)."""
    root, victim, indices = broken_set
    command = ["train", "--config", str(CPU_CONFIG), *TINY, "data.dataset=refcoco", f"data.root={root}",
               "train.epochs=1", "train.batch_size=2", "data.num_workers=1"]  # fmt: skip
    code, _, err = dcmfnet_command([*command, "--output-dir", str(tmp_path / "stop")], capfd)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, not a worker's traceback
    assert lines[0].startswith(f"dcmfnet train: error: cannot read image {victim} (sample ")
    assert any(f"(sample {index} of refcoco train" in lines[0] for index in indices), lines[0]

    skip = [*command, "--output-dir", str(tmp_path / "skip"), "data.skip_unreadable=true"]
    code, _, err = dcmfnet_command(skip, capfd)
    assert code == 0, err
    skipped = [line for line in err.splitlines() if line.startswith("skipped unreadable sample")]
    assert skipped and all(str(victim) in line for line in skipped)
    assert (tmp_path / "skip" / "last.pt").is_file()
