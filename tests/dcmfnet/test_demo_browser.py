"""The demo end to end in a real headless browser (Debian's chromium + chromium-driver, driven by Selenium).

The page is served on a free local port with a tiny model built here; the browser draws a built-in
scene, submits its expression, and the mask the page shows must equal the Python API's mask for the
same input. Errors (an empty expression, an undecodable upload) must appear in the page. The page
must load nothing from outside this machine.

Run as a script to take the screenshot of the docs with this browser and a trained model::

    python -m tests.dcmfnet.test_demo_browser --model model --output docs/_static/demo.png
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import socket
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from dcmfnet import demo
from dcmfnet.inference import Segmenter
from tests.dcmfnet.test_demo import tiny_segmenter

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
#: No network, no first-run or background traffic, a fresh profile (added in :func:`open_browser`).
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1250",
)
TIMEOUT_S = 120

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="needs Debian's chromium and chromium-driver on PATH (apt-get install chromium chromium-driver; "
        ".ci/run installs them)",
    ),
]


def free_port() -> int:
    """A TCP port free on this machine now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def open_browser(profile: Path) -> WebDriver:
    """Headless Chromium with a fresh profile in ``profile``, logging every network request."""
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)))


def text_of(browser: WebDriver, selector: str) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, selector).text)


def wait_for_text(browser: WebDriver, selector: str, words: str) -> str:
    """Wait until the element's text contains ``words``; return the text."""
    WebDriverWait(browser, TIMEOUT_S).until(lambda b: words in text_of(b, selector))
    return text_of(browser, selector)


def shown_image(browser: WebDriver, selector: str) -> np.ndarray:
    """The picture an ``<img>`` inside ``selector`` shows, fetched from its address."""
    WebDriverWait(browser, TIMEOUT_S).until(lambda b: b.find_elements(By.CSS_SELECTOR, f"{selector} img"))
    source = browser.find_element(By.CSS_SELECTOR, f"{selector} img").get_attribute("src")
    with urllib.request.urlopen(source, timeout=30) as response:
        return np.array(Image.open(io.BytesIO(response.read())))


def open_page(browser: WebDriver, url: str) -> None:
    browser.get(url)
    WebDriverWait(browser, TIMEOUT_S).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#draw-scene"))


def draw_and_segment(browser: WebDriver, url: str) -> tuple[int, str]:
    """Open the page, draw a built-in scene, submit its expression; return the scene's index and expression."""
    open_page(browser, url)
    browser.find_element(By.CSS_SELECTOR, "#draw-scene").click()
    info = wait_for_text(browser, "#scene-info", "Built-in scene")
    match = re.search(r"Built-in scene (\d+)", info)
    assert match is not None, info
    expression = browser.find_element(By.CSS_SELECTOR, "#expression textarea").get_attribute("value")
    browser.find_element(By.CSS_SELECTOR, "#segment").click()
    wait_for_text(browser, "#status", "the request took")
    return int(match.group(1)), str(expression)


def type_expression(browser: WebDriver, expression: str) -> None:
    box = browser.find_element(By.CSS_SELECTOR, "#expression textarea")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(expression)


def network_requests(browser: WebDriver) -> list[str]:
    """The network addresses (http, https, ws, wss) the browser requested since the last call."""
    requested = set()
    for entry in browser.get_log("performance"):
        if '"Network.requestWillBeSent"' in entry["message"]:
            requested.update(re.findall(r'"url":"([^"]+)"', entry["message"]))
    return sorted(u for u in requested if u.split(":", 1)[0] in ("http", "https", "ws", "wss"))


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Segmenter, str]]:
    segmenter = tiny_segmenter()
    app = demo.build_app(segmenter, seed=0)
    url = demo.launch(app, host="127.0.0.1", port=free_port(), block=False)
    yield segmenter, url
    app.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    driver = open_browser(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def test_page_mask_is_the_api_mask(served: tuple[Segmenter, str], browser: WebDriver, tmp_path: Path) -> None:
    segmenter, url = served
    index, expression = draw_and_segment(browser, url)
    scene = demo.builtin_scene(index)
    assert expression == scene.expression
    np.testing.assert_array_equal(shown_image(browser, "#image"), scene.image)  # the scene reached the page losslessly
    status = text_of(browser, "#status")
    assert f'"{expression}"' in status and "the request took" in status and " ms" in status
    expected = segmenter.segment(scene.image, expression, return_maps=True)
    assert 0 < expected.mask.sum() < expected.mask.size
    np.testing.assert_array_equal(shown_image(browser, "#mask") > 127, expected.mask)
    overlay = shown_image(browser, "#overlay")
    assert overlay.shape == scene.image.shape and not np.array_equal(overlay, scene.image)
    assert expected.fusion_maps is not None
    captions = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".maps .caption-label")}
    assert {"LGVE-1", "LGVE-2", "MLFF"} | {f"IGF {site}: F_1" for site in expected.fusion_maps} <= captions
    # a caption per group says what the site is and what bright means; one colour scale for all
    for group, words in (("stages", "LGVE-2"), *((site, "Bright") for site in expected.fusion_maps)):
        assert words in text_of(browser, f"#caption-{group}"), group
    assert "blue = weak, red = strong" in text_of(browser, "#map-legend")
    gradient = browser.execute_script(
        "return getComputedStyle(document.querySelector('#colour-scale .bar')).backgroundImage"
    )
    assert gradient.startswith("linear-gradient") and "blue: weak" in text_of(browser, "#colour-scale"), gradient
    # the map tiles keep the image's aspect (not cropped to a square)
    fits = browser.execute_script(
        "return [...document.querySelectorAll('.maps img')].map(i => getComputedStyle(i).objectFit)"
    )
    assert fits and set(fits) == {"contain"}, fits
    browser.save_screenshot(str(tmp_path / "demo.png"))
    requests = network_requests(browser)
    assert any(u.startswith(url) for u in requests), requests
    assert [u for u in requests if not u.startswith(url.rstrip("/"))] == []  # nothing from outside: works offline


def test_page_shows_errors(served: tuple[Segmenter, str], browser: WebDriver, tmp_path: Path) -> None:
    _, url = served
    draw_and_segment(browser, url)
    type_expression(browser, "   ")
    browser.find_element(By.CSS_SELECTOR, "#segment").click()
    wait_for_text(browser, "#status", "the expression is empty")
    assert not browser.find_elements(By.CSS_SELECTOR, "#mask img")

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not an image")
    open_page(browser, url)
    browser.find_element(By.CSS_SELECTOR, "#image input[type=file]").send_keys(str(broken))
    type_expression(browser, "the red circle")
    browser.find_element(By.CSS_SELECTOR, "#segment").click()
    status = wait_for_text(browser, "#status", "Error")
    assert "cannot read image 'broken.png'" in status, status
    assert "/tmp" not in status and "gradio" not in status  # no path on the server


def test_upload_clears_the_scene_caption_and_threshold_changes_the_mask(
    served: tuple[Segmenter, str], browser: WebDriver, tmp_path: Path
) -> None:
    segmenter, url = served
    index, expression = draw_and_segment(browser, url)
    default = shown_image(browser, "#mask") > 127
    slider = browser.find_element(By.CSS_SELECTOR, "#threshold input[type=number]")
    slider.send_keys(Keys.CONTROL, "a")
    slider.send_keys("0.95", Keys.ENTER)
    browser.find_element(By.CSS_SELECTOR, "#segment").click()
    wait_for_text(browser, "#status", "over probability 0.95")
    high = shown_image(browser, "#mask") > 127
    assert high.sum() < default.sum()
    upload = tmp_path / "upload.png"
    Image.fromarray(demo.builtin_scene(index + 1).image).save(upload)
    browser.find_element(By.CSS_SELECTOR, "#image input[type=file]").send_keys(str(upload))
    WebDriverWait(browser, TIMEOUT_S).until(lambda b: "Built-in scene" not in text_of(b, "#scene-info"))
    np.testing.assert_array_equal(shown_image(browser, "#image"), demo.builtin_scene(index + 1).image)


def take_screenshot(segmenter: Segmenter, output: Path, *, seed: int) -> str:
    """Serve the demo, draw a scene, segment it and save the browser's screenshot; return the status line."""
    app = demo.build_app(segmenter, seed=seed)
    url = demo.launch(app, host="127.0.0.1", port=free_port(), block=False)
    try:
        with tempfile.TemporaryDirectory() as profile:
            browser = open_browser(Path(profile))
            try:
                browser.set_window_size(1400, 2500)  # the whole page in one picture
                draw_and_segment(browser, url)
                WebDriverWait(browser, TIMEOUT_S).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".maps img"))
                output.parent.mkdir(parents=True, exist_ok=True)
                browser.save_screenshot(str(output))
                return text_of(browser, "#status")
            finally:
                browser.quit()
    finally:
        app.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Screenshot of the demo for the docs, taken by this test's browser")
    parser.add_argument("--model", required=True, help="model folder written by `dcmfnet export`")
    parser.add_argument("--output", required=True, help="PNG to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scene draw")
    arguments = parser.parse_args()
    segmenter = Segmenter.from_pretrained(arguments.model, max_pixels=demo.DEMO_MAX_PIXELS)  # as `dcmfnet demo`
    print(take_screenshot(segmenter, Path(arguments.output), seed=arguments.seed))
