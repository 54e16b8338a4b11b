"""The browser demo: type an expression, see the mask and the paper's Fig. 6/7 maps (a Gradio page).

:func:`build_app` lays out the page around a loaded :class:`~dcmfnet.inference.Segmenter` (the model
is loaded once, by the caller); :func:`segment_request` is what one click runs, plain Python that a
test calls without a browser. ``dcmfnet demo`` (:mod:`dcmfnet.demo_command`) serves the page.

Gradio (the optional ``dcmfnet[demo]`` group) is imported here and in no other module of the package.
The page works offline: no telemetry, no version check, no fonts or scripts from elsewhere.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import numpy as np
from PIL import Image

from dcmfnet.data.synthetic import Scene, SyntheticReferring
from dcmfnet.errors import InputError, is_user_error
from dcmfnet.visualize import feature_map_images, overlay_mask

if TYPE_CHECKING:
    from dcmfnet.inference import Segmenter

__all__ = [
    "DEMO_MAX_PIXELS",
    "SCENE_SPLIT",
    "DemoResponse",
    "Limits",
    "build_app",
    "builtin_scene",
    "launch",
    "segment_request",
]

#: The built-in dataset's split the page draws scenes from (``SyntheticReferring(split=SCENE_SPLIT)``).
SCENE_SPLIT = "test"
#: How many scenes of that split the button draws from.
SCENE_COUNT = 10_000
#: The pixel cap of ``dcmfnet demo``'s segmenter (a 12-megapixel phone photo fits).
DEMO_MAX_PIXELS = 4096 * 4096
#: The images fill their panels; small ones (the built-in scenes are 64 × 64) show their pixels, not a blur.
CSS = """
#image img, #overlay img, #mask img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
#maps img { image-rendering: pixelated; }
"""
#: Height of the image panels in CSS pixels.
PANEL_HEIGHT = 320
#: Longest side of the Fig. 6/7 pictures in the gallery (the maps are coarse: ``H/4`` at most).
MAP_SIDE = 256


@dataclass(frozen=True)
class Limits:
    """Bounds on one request, so that no visitor can stall the demo; the page states them.

    The pixel cap is the segmenter's own (``Segmenter(max_pixels=...)``, checked from the file's
    header before decoding); ``dcmfnet demo`` sets it to :data:`DEMO_MAX_PIXELS`.

    Attributes:
        max_expression_chars: longest expression, in characters.
        max_upload_bytes: largest uploaded file (refused by the server before any decoding).
    """

    max_expression_chars: int = 200
    max_upload_bytes: int = 20 * 1024 * 1024


@dataclass(frozen=True)
class DemoResponse:
    """What the page shows for one request.

    Attributes:
        message: Markdown: the expression, the mask's size and the time the request took, or why
            there is no result.
        overlay: ``(H, W, 3)`` uint8: the image with the mask drawn over it; ``None`` on an error.
        mask: ``(H, W)`` uint8, 255 on the referred object, at the image's size; ``None`` on an error.
        maps: ``(picture, caption)`` pairs: the Fig. 6 stage maps, then each IGF site's ``F_t`` (Fig. 7).
    """

    message: str
    overlay: np.ndarray | None = None
    mask: np.ndarray | None = None
    maps: list[tuple[np.ndarray, str]] = field(default_factory=list)


def _check_expression(expression: str, limits: Limits) -> None:
    """Refuse an expression over the length limit (the model checks the rest, e.g. an empty one)."""
    if len(expression) > limits.max_expression_chars:
        raise InputError(
            f"the expression has {len(expression)} characters; this demo takes at most "
            f"{limits.max_expression_chars} (a referring expression is a short phrase)"
        )


def _thumbnail(picture: np.ndarray, side: int = MAP_SIDE) -> np.ndarray:
    """``picture`` scaled so that its longest side is at most ``side`` pixels."""
    height, width = picture.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return picture
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BILINEAR))


def segment_request(
    segmenter: Segmenter,
    image: str | Path | np.ndarray | None,
    expression: str,
    limits: Limits | None = None,
) -> DemoResponse:
    """Run one request of the page: check the bounds, segment, draw the overlay, the mask and the maps.

    Args:
        segmenter: the loaded model.
        image: a file path or an ``(H, W, 3)`` uint8 array; ``None`` when the page has no image yet.
        expression: the referring expression.
        limits: the bounds (default :class:`Limits`; the pixel cap is the segmenter's).

    Returns:
        the :class:`DemoResponse`; a user's mistake (no image, an undecodable file, an empty or too
        long expression, too many pixels) gives one with the reason as its message and no pictures.
    """
    limits = limits or Limits()
    start = time.perf_counter()
    try:
        if image is None:
            raise InputError("no image: upload or paste one, or draw a built-in scene")
        _check_expression(expression, limits)
        picture = segmenter.load_image(image)
        result = segmenter.segment(picture, expression, return_maps=True)
    except Exception as error:
        if not is_user_error(error):
            raise
        return DemoResponse(message=f"**Error:** {error}")
    maps = feature_map_images(_thumbnail(picture), result.stage_maps or {}, result.fusion_maps or {})
    overlay = overlay_mask(picture, result.mask)
    elapsed_ms = (time.perf_counter() - start) * 1000
    pixels = int(result.mask.sum())
    lines = [
        f'**"{result.expression}"**: {pixels:,} of {result.mask.size:,} pixels ({pixels / result.mask.size:.1%}); '
        f"the request took {elapsed_ms:.0f} ms",
        *(f"- warning: {warning}" for warning in result.warnings),
    ]
    return DemoResponse("\n".join(lines), overlay, result.mask.astype(np.uint8) * 255, maps)


def builtin_scene(index: int, image_size: int = 64) -> Scene:
    """Scene ``index`` of the built-in dataset's :data:`SCENE_SPLIT` split (the same on every machine)."""
    return SyntheticReferring(split=SCENE_SPLIT, num_samples=SCENE_COUNT, image_size=image_size).scene(index)


def _write_examples(directory: Path, image_size: int) -> list[list[str]]:
    """Three built-in scenes as PNG files with their expressions, and the first again with another object's."""
    rows = []
    for index in range(3):
        scene = builtin_scene(index, image_size)
        path = directory / f"scene_{index}.png"
        Image.fromarray(scene.image).save(path)
        rows.append([str(path), scene.expression])
    first = builtin_scene(0, image_size)
    named = [(o.colour, o.shape) for o in first.objects]
    others = [k for k, key in enumerate(named) if named.count(key) == 1 and k != first.target]
    if others:
        other = first.objects[others[0]]
        rows.append([rows[0][0], f"the {other.colour} {other.shape}"])
    return rows


def _introduction(limits: Limits, max_pixels: int | None, image_size: int) -> str:
    pixels = f"up to {max_pixels:,} pixels and " if max_pixels is not None else "up to "
    return (
        "# DCMFNet: referring image segmentation\n"
        "Give an image and an expression naming one object in it (upload, paste, or draw a scene of the built-in "
        f"dataset: {image_size} × {image_size} shapes, with its ground-truth expression). The result is the mask "
        "over the image, the mask alone, and the maps that explain the model: the outputs of LGVE-1, LGVE-2 and "
        "MLFF (the paper's Fig. 6) and every IGF site's per-layer fusion F_t (Fig. 7).\n\n"
        f"Bounds: images {pixels}{limits.max_upload_bytes // 2**20} MiB, "
        f"expressions up to {limits.max_expression_chars} characters."
    )


def build_app(
    segmenter: Segmenter, *, limits: Limits | None = None, scene_size: int = 64, seed: int | None = None
) -> gr.Blocks:
    """The demo page around a loaded segmenter.

    Args:
        segmenter: the model, loaded once and shared by every request.
        limits: the bounds on a request (default :class:`Limits`).
        scene_size: side of the built-in scenes in pixels (the built-in model was trained at 64).
        seed: seed of the scene button's draws (``None``: a different sequence every start).

    Returns:
        the :class:`gradio.Blocks`; serve it with :func:`launch`.
    """
    limits = limits or Limits()
    draws = random.Random(seed)
    examples_dir = Path(tempfile.mkdtemp(prefix="dcmfnet-demo-"))

    def respond(payload: Mapping[str, Any] | None, expression: str) -> tuple[Any, ...]:
        # ``preprocess=False``: the image arrives as Gradio's file record, so an undecodable upload
        # reaches the segmenter (whose error the page shows) instead of failing inside Gradio.
        path = payload.get("path") if payload else None
        response = segment_request(segmenter, path, expression, limits)
        return response.message, response.overlay, response.mask, response.maps

    def draw_scene() -> tuple[np.ndarray, str, str]:
        index = draws.randrange(SCENE_COUNT)
        scene = builtin_scene(index, scene_size)
        return scene.image, scene.expression, f"Built-in scene {index} of the synthetic {SCENE_SPLIT} split."

    app = gr.Blocks(title="DCMFNet demo", analytics_enabled=False)  # no telemetry, no version check
    with app:
        gr.Markdown(_introduction(limits, segmenter.max_pixels, scene_size))
        with gr.Row():
            with gr.Column(scale=2):
                image, expression, scene_button, segment_button, scene_info = _input_panel()
                gr.Examples(_write_examples(examples_dir, scene_size), [image, expression], label="Examples")
            with gr.Column(scale=3):
                outputs = _output_panel()
        segment_button.click(respond, [image, expression], outputs, preprocess=False)
        expression.submit(respond, [image, expression], outputs, preprocess=False)
        scene_button.click(draw_scene, None, [image, expression, scene_info])
    return app


def _input_panel() -> tuple[gr.Image, gr.Textbox, gr.Button, gr.Button, gr.Markdown]:
    """The image, the expression, the two buttons and the line that names a drawn scene."""
    image = gr.Image(
        label="Image",
        sources=["upload", "clipboard"],
        type="filepath",
        format="png",
        height=PANEL_HEIGHT,
        elem_id="image",
    )
    expression = gr.Textbox(label="Expression", placeholder="the red circle", elem_id="expression")
    with gr.Row():
        scene_button = gr.Button("Draw a built-in scene", elem_id="draw-scene")
        segment_button = gr.Button("Segment", variant="primary", elem_id="segment")
    scene_info = gr.Markdown(elem_id="scene-info")
    return image, expression, scene_button, segment_button, scene_info


def _output_panel() -> list[gr.components.Component]:
    """The result: status line, overlay, mask and the gallery of Fig. 6/7 maps (the order of :class:`DemoResponse`)."""
    status = gr.Markdown(elem_id="status")
    with gr.Row():
        overlay = gr.Image(label="Overlay", format="png", interactive=False, height=PANEL_HEIGHT, elem_id="overlay")
        mask = gr.Image(label="Mask", format="png", interactive=False, height=PANEL_HEIGHT, elem_id="mask")
    maps = gr.Gallery(
        label="Fig. 6: the LGVE-1, LGVE-2 and MLFF outputs · Fig. 7: each IGF site's per-layer fusion F_t",
        columns=5,
        height="auto",
        format="png",
        elem_id="maps",
    )
    return [status, overlay, mask, maps]


def launch(app: gr.Blocks, *, host: str, port: int | None, limits: Limits | None = None, block: bool = True) -> str:
    """Serve ``app`` on ``host:port`` (``port=None``: Gradio's first free port from 7860).

    Args:
        app: the page from :func:`build_app`.
        host: address to listen on (``127.0.0.1``: this machine only; ``0.0.0.0``: every interface).
        port: TCP port.
        limits: the bounds (for the upload size).
        block: serve until interrupted; ``False`` returns at once (the server runs in a thread, stop it
            with ``app.close()``).

    Returns:
        the page's local URL.
    """
    limits = limits or Limits()
    app.queue(default_concurrency_limit=1)  # one request at a time: the model is shared
    _, url, _ = app.launch(
        server_name=host,
        server_port=port,
        max_file_size=limits.max_upload_bytes,
        prevent_thread_lock=not block,
        ssr_mode=False,
        css=CSS,
        share=False,
        quiet=not block,
    )
    return str(url)
