"""The demo's request function without a browser: its mask is the Python API's, a user's mistake is a message."""

from __future__ import annotations

import math
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dcmfnet import demo
from dcmfnet.checkpoint import save_checkpoint
from dcmfnet.commands.main import main as dcmfnet_main
from dcmfnet.config import build_model
from dcmfnet.data.build import max_tokens_for
from dcmfnet.data.synthetic import SyntheticReferring
from dcmfnet.inference import Segmenter
from dcmfnet.train_config import config_to_dict
from tests.dcmfnet.tiny_run import tiny_config


def tiny_segmenter() -> Segmenter:
    """An untrained tiny DCMFNet (deterministic) whose mask covers about half of built-in scene 0.

    An untrained model's logits all lie on one side of 0; an empty or full mask would make comparing
    masks vacuous, so the output bias is moved by the median logit of one scene.
    """
    torch.manual_seed(0)
    cfg = tiny_config()
    model = build_model(cfg.model)
    segmenter = Segmenter(model, image_size=cfg.data.image_size, max_tokens=max_tokens_for(cfg.data))
    scene = demo.builtin_scene(0)
    probabilities = segmenter.segment(scene.image, scene.expression, return_probabilities=True).probabilities
    median = float(np.median(probabilities))
    with torch.no_grad():
        model.head[-1].bias -= math.log(median / (1 - median))
    return segmenter


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return tiny_segmenter()


def test_builtin_scene_is_the_dataset_scene() -> None:
    scene = demo.builtin_scene(17)
    expected = SyntheticReferring(split=demo.SCENE_SPLIT, num_samples=18).scene(17)
    assert scene.expression == expected.expression
    np.testing.assert_array_equal(scene.image, expected.image)


@pytest.mark.parametrize("as_file", [False, True], ids=["array", "file"])
def test_request_mask_is_the_api_mask(segmenter: Segmenter, tmp_path, as_file: bool) -> None:
    scene = demo.builtin_scene(3)
    path = tmp_path / "scene.png"
    Image.fromarray(scene.image).save(path)
    response = demo.segment_request(segmenter, str(path) if as_file else scene.image, scene.expression)
    expected = segmenter.segment(scene.image, scene.expression, return_maps=True)
    assert 0 < expected.mask.sum() < expected.mask.size
    assert response.mask is not None and response.mask.dtype == np.uint8
    np.testing.assert_array_equal(response.mask, expected.mask.astype(np.uint8) * 255)
    assert response.overlay is not None and response.overlay.shape == scene.image.shape
    assert not np.array_equal(response.overlay, scene.image)
    captions = [caption for _, caption in response.maps]
    assert captions[:3] == ["LGVE-1", "LGVE-2", "MLFF"]
    assert expected.fusion_maps is not None
    layers = [(site, t) for site, fusions in expected.fusion_maps.items() for t in range(1, len(fusions) + 1)]
    assert captions[3:] == [f"IGF {site}: F_{t}" for site, t in layers]
    assert all(picture.dtype == np.uint8 and picture.shape[2] == 3 for picture, _ in response.maps)
    assert f'"{scene.expression}"' in response.message and "the request took" in response.message


def test_request_groups_have_captions_and_one_scale_per_site(segmenter: Segmenter) -> None:
    scene = demo.builtin_scene(3)
    response = demo.segment_request(segmenter, scene.image, scene.expression)
    expected = segmenter.segment(scene.image, scene.expression, return_maps=True)
    assert expected.fusion_maps is not None
    assert list(response.groups) == ["stages", *expected.fusion_maps]
    assert set(response.groups) <= set(demo.MAP_GROUPS) and set(demo.MAP_GROUPS) <= set(demo.GROUP_CAPTIONS)
    assert [c for _, c in response.groups["stages"]] == ["LGVE-1", "LGVE-2", "MLFF"]
    for site, caption in (("e3", "LGVE-1"), ("e4", "LGVE-1"), ("enc", "LGVE-2"), ("dec", "MLFF")):
        assert caption in demo.GROUP_CAPTIONS[site] and "Bright" in demo.GROUP_CAPTIONS[site]
    assert "blue = weak, red = strong" in demo.MAP_LEGEND


def test_steps_of_one_site_share_a_colour_scale() -> None:
    """F_2 = 3 F_1: on one scale F_1 is drawn colder than F_2 (each on its own scale they would look the same)."""
    from dcmfnet.visualize import colour_bar, feature_map_groups

    image = np.full((16, 24, 3), 128, dtype=np.uint8)
    feature = torch.rand(1, 4, 4, 6, generator=torch.Generator().manual_seed(0)) + 0.5
    groups = feature_map_groups(image, {}, {"e3": [feature, 3 * feature]})
    (first, _), (second, _) = groups["e3"]
    assert first.shape == second.shape == image.shape  # the image's aspect, not a square crop
    assert not np.array_equal(first, second)
    red = lambda picture: float(picture[..., 0].astype(int).mean() - picture[..., 2].astype(int).mean())  # noqa: E731
    assert red(second) > red(first)
    bar = colour_bar(width=100)
    assert bar.shape == (14, 100, 3) and bar[0, 0, 2] > bar[0, 0, 0] and bar[0, -1, 0] > bar[0, -1, 2]


def test_threshold_control(segmenter: Segmenter) -> None:
    scene = demo.builtin_scene(3)
    default = demo.segment_request(segmenter, scene.image, scene.expression)
    low = demo.segment_request(segmenter, scene.image, scene.expression, threshold=0.05)
    high = demo.segment_request(segmenter, scene.image, scene.expression, threshold=0.95)
    assert default.mask is not None and low.mask is not None and high.mask is not None
    assert (low.mask > 0).sum() >= (default.mask > 0).sum() >= (high.mask > 0).sum()
    assert (low.mask > 0).sum() > (high.mask > 0).sum()
    assert "over probability 0.95" in high.message
    for bad in (0.0, 1.0, -1.0):
        response = demo.segment_request(segmenter, scene.image, scene.expression, threshold=bad)
        assert f"the mask threshold must lie strictly between 0 and 1, got {bad}" in response.message
        assert response.mask is None


def test_error_names_the_upload_not_the_server_path(segmenter: Segmenter, tmp_path) -> None:
    broken = tmp_path / "gradio" / "0123abcd" / "holiday.png"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"this is not an image")
    response = demo.segment_request(segmenter, str(broken), "the red circle", image_name="holiday.png")
    assert "cannot read image 'holiday.png'" in response.message, response.message
    assert str(tmp_path) not in response.message


def test_served_log_has_no_share_hint(segmenter: Segmenter, capfd) -> None:
    import threading
    import time
    import urllib.request

    app = demo.build_app(segmenter, seed=0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = threading.Thread(target=demo.launch, kwargs={"app": app, "host": "127.0.0.1", "port": port}, daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                break
        except OSError:
            assert time.monotonic() < deadline, "the demo did not start"
            time.sleep(0.2)
    # the server answers before launch() returns and prints our line: wait for the line, then stop it
    log = ""
    while f"DCMFNet demo at {url}" not in log and time.monotonic() < deadline:
        log += "".join(capfd.readouterr())
        time.sleep(0.2)
    app.close()
    server.join(timeout=30)
    log += "".join(capfd.readouterr())
    assert f"DCMFNet demo at {url} (this machine only)" in log
    assert "share" not in log.lower() and "public link" not in log.lower(), log


def test_request_maps_are_thumbnails(segmenter: Segmenter) -> None:
    photo = np.random.default_rng(0).integers(0, 256, size=(600, 900, 3), dtype=np.uint8)
    response = demo.segment_request(segmenter, photo, "the red circle")
    assert response.mask is not None and response.mask.shape == (600, 900)
    assert {picture.shape for picture, _ in response.maps} == {(171, 256, 3)}


def test_request_errors_are_messages(segmenter: Segmenter, tmp_path) -> None:
    scene = demo.builtin_scene(0)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not an image")
    cases = [
        (None, "the red circle", "no image"),
        (scene.image, "   ", "the expression is empty"),
        (str(broken), "the red circle", f"cannot read image {broken}"),
        (str(tmp_path / "missing.png"), "the red circle", "does not exist"),
        (scene.image, "x" * 201, "the expression has 201 characters; this demo takes at most 200"),
    ]
    for image, expression, reason in cases:
        response = demo.segment_request(segmenter, image, expression)
        assert response.message.startswith("**Error:**") and reason in response.message
        assert response.overlay is None and response.mask is None and response.maps == []


def test_request_refuses_images_over_the_pixel_cap(segmenter: Segmenter, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(segmenter, "max_pixels", 32 * 32)
    path = tmp_path / "scene.png"
    Image.fromarray(demo.builtin_scene(0).image).save(path)
    response = demo.segment_request(segmenter, str(path), "the red circle")
    assert "64x64 = 4,096 pixels, over the cap of 1,024 pixels" in response.message
    assert response.mask is None


def test_request_does_not_hide_defects(segmenter: Segmenter, monkeypatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a defect")

    monkeypatch.setattr(segmenter, "segment", broken)
    with pytest.raises(RuntimeError, match="a defect"):
        demo.segment_request(segmenter, demo.builtin_scene(0).image, "the red circle")


def test_command_without_model_says_how_to_get_one(capsys) -> None:
    assert dcmfnet_main(["demo"]) == 2
    error = capsys.readouterr().err
    assert "--model DIR" in error and "dcmfnet train --config cpu_synthetic" in error and "dcmfnet export" in error


def test_command_loads_a_checkpoint_and_reports_a_busy_port(tmp_path, capsys) -> None:
    cfg = tiny_config()
    checkpoint = save_checkpoint(
        tmp_path / "tiny.pt", {"config": config_to_dict(cfg), "model": build_model(cfg.model).state_dict()}
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        threads = torch.get_num_threads()
        try:
            assert dcmfnet_main(["demo", "--checkpoint", str(checkpoint), "--port", str(port), "--threads", "1"]) == 2
            assert torch.get_num_threads() == 1
        finally:
            torch.set_num_threads(threads)
    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err


def test_only_the_demo_imports_gradio() -> None:
    script = (
        "import pkgutil, importlib, sys, dcmfnet, dcmfnet.commands.main\n"
        "dcmfnet.commands.main.build_parser()\n"
        "names = [m.name for m in pkgutil.walk_packages(dcmfnet.__path__, 'dcmfnet.')]\n"
        "for name in names:\n"
        "    if name != 'dcmfnet.demo' and not name.endswith('__main__'):\n"
        "        importlib.import_module(name)\n"
        "assert 'dcmfnet.commands.demo' in names, names\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gradio'))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.strip() == "[]"
