"""The browser demo: type an expression, see the mask and the paper's Fig. 6/7 maps (a Gradio page).

:func:`build_app` lays out the page around a loaded :class:`~dcmfnet.inference.Segmenter` (the model
is loaded once, by the caller); :func:`segment_request` is what one click runs, plain Python that a
test calls without a browser. ``dcmfnet demo`` (:mod:`dcmfnet.commands.demo`) serves the page.

Gradio (the optional ``dcmfnet[demo]`` group) is imported here and in no other module of the package.
The page works offline: no telemetry, no version check, no fonts or scripts from elsewhere.

Under load, one request runs at a time (the model is shared) and at most
:attr:`Limits.max_queue` wait; a request beyond that is refused at once with Gradio's "queue is
full" message instead of waiting without end. Uploads over :attr:`Limits.max_upload_bytes` are
refused by the server while they stream in, before the file is read whole.
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
from dcmfnet.model import FUSION_SITES
from dcmfnet.visualize import colour_bar, feature_map_groups, overlay_mask

if TYPE_CHECKING:
    from dcmfnet.inference import Segmenter

__all__ = [
    "DEMO_MAX_PIXELS",
    "GROUP_CAPTIONS",
    "MAP_LEGEND",
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
.maps img { image-rendering: pixelated; object-fit: contain !important; }
#colour-scale .bar { height: 14px; border-radius: 3px; }
#colour-scale .ends { display: flex; justify-content: space-between; font-size: 0.85em; }
"""
#: Height of the image panels in CSS pixels.
PANEL_HEIGHT = 320
#: Longest side of the Fig. 6/7 pictures in the gallery (the maps are coarse: ``H/4`` at most).
MAP_SIDE = 256
#: The mask is where the model's probability is over this (the slider's start; 0.5 is the model's own mask).
DEFAULT_THRESHOLD = 0.5
#: How to read every map on the page (shown beside the colour scale).
MAP_LEGEND = (
    "**How to read the maps.** Each map is drawn over the image. Its colour is how strongly the model's "
    "features respond at that place (their mean absolute value over the channels), on the scale below: "
    "**blue = weak, red = strong**. A model that understood the expression is brightest (red) on the object "
    "it names. The steps F_1 … F_L of one IGF site share one scale, so you can watch the response sharpen "
    "from step to step; each of the three stage maps has its own."
)
#: The caption of each group of maps: what the site is in the network and what to look for.
GROUP_CAPTIONS: dict[str, str] = {
    "stages": (
        "**The three stages (the paper's Fig. 6).** LGVE-1: the image backbone's last features after the "
        "sentence guided them at stages 3 and 4 (E3/E4). LGVE-2: the backbone's levels merged, then guided by "
        "the sentence again (E_enc). MLFF: the decoder's output, where coarse guided features sharpen the "
        "fine early ones (E_dec). Bright: where that stage responds most."
    ),
    "e2": "**IGF at E2 (LGVE-1, stage 2).** The sentence guides the backbone's stage-2 features; F_t after step t.",
    "e3": (
        "**IGF at E3 (LGVE-1, stage 3).** The sentence guides the backbone's stage-3 features in L steps; "
        "F_t is the fused map after step t. Bright: where the words meet the image."
    ),
    "e4": (
        "**IGF at E4 (LGVE-1, stage 4).** The same at the backbone's last, coarsest stage; F_t after step t. "
        "Bright: where the words meet the image."
    ),
    "enc": (
        "**IGF at E_enc (LGVE-2).** The sentence guides the merged multi-level features once more; F_t after "
        "step t. Bright: the regions the sentence picks out."
    ),
    "dec": (
        "**IGF in the decoder (MLFF).** No words here: the coarse decoder map guides the fine early features, "
        "so the object's outline sharpens; F_t after step t. Bright: the object taking shape."
    ),
}


@dataclass(frozen=True)
class Limits:
    """Bounds on one request, so that no visitor can stall the demo; the page states them.

    The pixel cap is the segmenter's own (``Segmenter(max_pixels=...)``, checked from the file's
    header before decoding); ``dcmfnet demo`` sets it to :data:`DEMO_MAX_PIXELS`.

    Attributes:
        max_expression_chars: longest expression, in characters.
        max_upload_bytes: largest uploaded file (refused by the server while it streams in, before
            it is read whole or decoded).
        max_queue: requests that may wait while one runs; one more is refused at once (Gradio's
            "queue is full"), so a crowd gets an answer or a refusal, never an endless wait.
    """

    max_expression_chars: int = 200
    max_upload_bytes: int = 20 * 1024 * 1024
    max_queue: int = 16


@dataclass(frozen=True)
class DemoResponse:
    """What the page shows for one request.

    Attributes:
        message: Markdown: the expression, the mask's size and the time the request took, or why
            there is no result.
        overlay: ``(H, W, 3)`` uint8: the image with the mask drawn over it; ``None`` on an error.
        mask: ``(H, W)`` uint8, 255 on the referred object, at the image's size; ``None`` on an error.
        maps: ``(picture, caption)`` pairs: the Fig. 6 stage maps, then each IGF site's ``F_t`` (Fig. 7).
        groups: the same pictures by group: ``"stages"``, then each IGF site (see :data:`GROUP_CAPTIONS`).
    """

    message: str
    overlay: np.ndarray | None = None
    mask: np.ndarray | None = None
    maps: list[tuple[np.ndarray, str]] = field(default_factory=list)
    groups: dict[str, list[tuple[np.ndarray, str]]] = field(default_factory=dict)


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


def _check_threshold(threshold: float) -> float:
    value = float(threshold)
    if not 0.0 < value < 1.0:
        raise InputError(f"the mask threshold must lie strictly between 0 and 1, got {threshold}")
    return value


def segment_request(
    segmenter: Segmenter,
    image: str | Path | np.ndarray | None,
    expression: str,
    limits: Limits | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    image_name: str | None = None,
) -> DemoResponse:
    """Run one request of the page: check the bounds, segment, draw the overlay, the mask and the maps.

    Args:
        segmenter: the loaded model.
        image: a file path or an ``(H, W, 3)`` uint8 array; ``None`` when the page has no image yet.
        expression: the referring expression.
        limits: the bounds (default :class:`Limits`; the pixel cap is the segmenter's).
        threshold: the mask is where the model's probability exceeds this, in (0, 1); 0.5 gives the
            model's own mask (:meth:`Segmenter.segment`).
        image_name: what to call a file ``image`` in a message instead of its path on the server (an
            upload's own file name); ``None`` shows the path.

    Returns:
        the :class:`DemoResponse`; a user's mistake (no image, an undecodable file, an empty or too
        long expression, too many pixels, a threshold out of range) gives one with the reason as its
        message and no pictures.
    """
    limits = limits or Limits()
    start = time.perf_counter()
    try:
        if image is None:
            raise InputError("no image: upload or paste one, or draw a built-in scene")
        _check_expression(expression, limits)
        threshold = _check_threshold(threshold)
        picture = segmenter.load_image(image)
        result = segmenter.segment(picture, expression, return_maps=True, return_probabilities=True)
    except Exception as error:
        if not is_user_error(error):
            raise
        message = str(error)
        if image_name is not None and isinstance(image, (str, Path)):
            for shown in sorted({str(image), str(Path(image).resolve())}, key=len, reverse=True):
                message = message.replace(shown, repr(image_name))
        return DemoResponse(message=f"**Error:** {message}")
    mask = result.mask
    if threshold != DEFAULT_THRESHOLD and result.probabilities is not None:
        mask = result.probabilities > threshold
    groups = feature_map_groups(_thumbnail(picture), result.stage_maps or {}, result.fusion_maps or {})
    overlay = overlay_mask(picture, mask)
    elapsed_ms = (time.perf_counter() - start) * 1000
    pixels = int(mask.sum())
    lines = [
        f'**"{result.expression}"**: {pixels:,} of {mask.size:,} pixels ({pixels / mask.size:.1%}) over '
        f"probability {threshold:.2f}; the request took {elapsed_ms:.0f} ms",
        *(f"- warning: {warning}" for warning in result.warnings),
    ]
    maps = [pair for group in groups.values() for pair in group]
    return DemoResponse("\n".join(lines), overlay, mask.astype(np.uint8) * 255, maps, groups)


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

    def respond(payload: Mapping[str, Any] | None, expression: str, threshold: float) -> tuple[Any, ...]:
        # ``preprocess=False``: the image arrives as Gradio's file record, so an undecodable upload
        # reaches the segmenter (whose error the page shows) instead of failing inside Gradio.
        path = payload.get("path") if payload else None
        name = (payload.get("orig_name") if payload else None) or (Path(path).name if path else None)
        response = segment_request(segmenter, path, expression, limits, threshold=threshold, image_name=name)
        galleries = [
            gr.Gallery(value=response.groups.get(group), visible=bool(response.groups.get(group)))
            for group in MAP_GROUPS
        ]
        captions = [gr.Markdown(visible=bool(response.groups.get(group))) for group in MAP_GROUPS]
        return (response.message, response.overlay, response.mask, *captions, *galleries)

    def draw_scene() -> tuple[np.ndarray, str, str]:
        index = draws.randrange(SCENE_COUNT)
        scene = builtin_scene(index, scene_size)
        return scene.image, scene.expression, f"Built-in scene {index} of the synthetic {SCENE_SPLIT} split."

    app = gr.Blocks(title="DCMFNet demo", analytics_enabled=False)  # no telemetry, no version check
    with app:
        gr.Markdown(_introduction(limits, segmenter.max_pixels, scene_size))
        with gr.Row():
            with gr.Column(scale=2):
                image, expression, threshold, scene_button, segment_button, scene_info = _input_panel()
                gr.Examples(_write_examples(examples_dir, scene_size), [image, expression], label="Examples")
            with gr.Column(scale=3):
                outputs = _output_panel()
        inputs = [image, expression, threshold]
        segment_button.click(respond, inputs, outputs, preprocess=False)
        expression.submit(respond, inputs, outputs, preprocess=False)
        threshold.release(respond, inputs, outputs, preprocess=False)
        scene_button.click(draw_scene, None, [image, expression, scene_info])
        # A new picture is not the drawn scene any more: its caption goes.
        image.upload(lambda: "", None, scene_info, queue=False)
        image.clear(lambda: "", None, scene_info, queue=False)
    return app


#: The groups of maps, each with its caption (:data:`GROUP_CAPTIONS`) and gallery, in page order.
MAP_GROUPS: tuple[str, ...] = ("stages", *FUSION_SITES)


def _input_panel() -> tuple[gr.Image, gr.Textbox, gr.Slider, gr.Button, gr.Button, gr.Markdown]:
    """The image, the expression, the mask threshold, the two buttons and the line that names a drawn scene."""
    image = gr.Image(
        label="Image",
        sources=["upload", "clipboard"],
        type="filepath",
        format="png",
        height=PANEL_HEIGHT,
        elem_id="image",
    )
    expression = gr.Textbox(label="Expression", placeholder="the red circle", elem_id="expression")
    threshold = gr.Slider(
        minimum=0.05,
        maximum=0.95,
        step=0.05,
        value=DEFAULT_THRESHOLD,
        label="Mask threshold: the mask is where the model's probability is above this (0.5: its own mask)",
        elem_id="threshold",
    )
    with gr.Row():
        scene_button = gr.Button("Draw a built-in scene", elem_id="draw-scene")
        segment_button = gr.Button("Segment", variant="primary", elem_id="segment")
    scene_info = gr.Markdown(elem_id="scene-info")
    return image, expression, threshold, scene_button, segment_button, scene_info


def _output_panel() -> list[gr.components.Component]:
    """The result: status line, overlay, mask, then per group of maps a caption and a gallery."""
    status = gr.Markdown(elem_id="status")
    with gr.Row():
        overlay = gr.Image(label="Overlay", format="png", interactive=False, height=PANEL_HEIGHT, elem_id="overlay")
        mask = gr.Image(label="Mask", format="png", interactive=False, height=PANEL_HEIGHT, elem_id="mask")
    with gr.Row(equal_height=True):
        gr.Markdown(MAP_LEGEND, elem_id="map-legend")
    gr.HTML(_colour_scale_html(), elem_id="colour-scale")
    captions, galleries = [], []
    for group in MAP_GROUPS:
        captions.append(gr.Markdown(GROUP_CAPTIONS[group], visible=False, elem_id=f"caption-{group}"))
        galleries.append(
            gr.Gallery(
                label=GROUP_CAPTIONS[group].split("**")[1].rstrip("."),
                columns=5,
                rows=1,
                height=250,
                format="png",
                object_fit="contain",
                visible=False,
                elem_id=f"maps-{group}",
                elem_classes=["maps"],
            )
        )
    return [status, overlay, mask, *captions, *galleries]


def _colour_scale_html() -> str:
    """The heat maps' colour scale as a CSS gradient (the ``jet`` colours of :func:`colour_bar`), ends labelled."""
    stops = ", ".join(f"rgb({r},{g},{b})" for r, g, b in colour_bar(width=9)[0])
    return (
        f'<div class="bar" style="background: linear-gradient(to right, {stops});"></div>'
        '<div class="ends"><span>blue: weak response</span><span>red: strong response</span></div>'
    )


def launch(app: gr.Blocks, *, host: str, port: int | None, limits: Limits | None = None, block: bool = True) -> str:
    """Serve ``app`` on ``host:port`` (``port=None``: Gradio's first free port from 7860).

    One request runs at a time and at most ``limits.max_queue`` wait (more are refused at once);
    uploads over ``limits.max_upload_bytes`` are refused while they stream in. Gradio's own start-up
    lines (which suggest a public share link) are not printed; with ``block`` one line of ours says
    where the page is.

    Args:
        app: the page from :func:`build_app`.
        host: address to listen on (``127.0.0.1``: this machine only; ``0.0.0.0``: every interface).
        port: TCP port.
        limits: the bounds (for the upload size and the queue).
        block: serve until interrupted; ``False`` returns at once (the server runs in a thread, stop it
            with ``app.close()``).

    Returns:
        the page's local URL.
    """
    limits = limits or Limits()
    app.queue(default_concurrency_limit=1, max_size=limits.max_queue)  # one at a time: the model is shared
    _, url, _ = app.launch(
        server_name=host,
        server_port=port,
        max_file_size=limits.max_upload_bytes,
        prevent_thread_lock=True,
        ssr_mode=False,
        css=CSS,
        share=False,
        quiet=True,
    )
    if block:
        where = "this machine only" if host in ("127.0.0.1", "localhost", "::1") else f"every address of {host}"
        print(f"DCMFNet demo at {url} ({where}); Ctrl+C stops it", flush=True)
        try:
            app.block_thread()
        finally:
            app.close()
    return str(url)
