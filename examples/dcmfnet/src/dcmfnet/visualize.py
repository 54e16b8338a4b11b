"""PNG figures: mask overlays, a gallery of predictions, training curves, and the paper's Fig. 6/7 maps.

Everything is drawn with matplotlib's non-interactive Agg backend and Pillow, so it runs on a
machine without a display.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

__all__ = [
    "OVERLAY_TINTS",
    "colour_bar",
    "contrasting_tint",
    "feature_energy",
    "feature_map_groups",
    "feature_map_images",
    "heatmap_overlay",
    "overlay_mask",
    "save_feature_maps",
    "save_gallery",
    "save_training_curves",
]


#: The tints :func:`overlay_mask` chooses from: saturated hues far apart, so one of them is far from any object.
OVERLAY_TINTS: tuple[tuple[int, int, int], ...] = (
    (255, 40, 40),  # red
    (40, 220, 40),  # green
    (40, 110, 255),  # blue
    (255, 225, 0),  # yellow
    (255, 0, 255),  # magenta
    (0, 230, 255),  # cyan
)


def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` dilated by ``steps`` pixels (4-neighbourhood)."""
    grown = mask
    for _ in range(steps):
        padded = np.pad(grown, 1)
        grown = grown | padded[2:, 1:-1] | padded[:-2, 1:-1] | padded[1:-1, 2:] | padded[1:-1, :-2]
    return grown


def _shrink(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` eroded by ``steps`` pixels (4-neighbourhood; the image border does not erode)."""
    shrunk = mask
    for _ in range(steps):
        padded = np.pad(shrunk, 1, mode="edge")
        shrunk = shrunk & padded[2:, 1:-1] & padded[:-2, 1:-1] & padded[1:-1, 2:] & padded[1:-1, :-2]
    return shrunk


def contrasting_tint(pixels: np.ndarray) -> tuple[int, int, int]:
    """The tint of :data:`OVERLAY_TINTS` farthest (mean RGB distance) from ``pixels``, an ``(N, 3)`` array."""
    pixels = np.asarray(pixels, dtype=np.float32).reshape(-1, 3)
    if not len(pixels):
        return OVERLAY_TINTS[0]
    pixels = pixels[:: max(1, len(pixels) // 20_000)]  # a sample is enough to rank six colours
    tints = np.asarray(OVERLAY_TINTS, dtype=np.float32)
    distance = np.linalg.norm(pixels[:, None, :] - tints[None, :, :], axis=-1).mean(axis=0)
    return OVERLAY_TINTS[int(distance.argmax())]


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    colour: tuple[int, int, int] | None = None,
    alpha: float = 0.5,
    outline_width: int | None = None,
) -> np.ndarray:
    """Draw ``mask`` over an ``(H, W, 3)`` uint8 image so that it shows on an object of any colour.

    - **Tint**: the masked pixels are blended with ``colour`` (weight ``alpha``). By default the colour
      is the one of :data:`OVERLAY_TINTS` farthest from the pixels under the mask, so a red object is
      tinted cyan or green, not red.
    - **Outline**: a band just inside the mask's edge in the tint at full strength, and a band just
      outside it in black or white (whichever contrasts with the tint), so the edge shows on any
      background, even one of the tint's colour.

    Args:
        image: ``(H, W, 3)`` uint8.
        mask: ``(H, W)``, non-zero inside.
        colour: a fixed tint instead of the contrasting one.
        alpha: the tint's weight in ``[0, 1]``.
        outline_width: each band's width in pixels; default 1 pixel per 256 pixels of the shorter side
            (at least 1).

    Returns:
        a new ``(H, W, 3)`` uint8 image; ``image`` itself when the mask is empty.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got shape {tuple(image.shape)}")
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    mask = mask.astype(bool)
    out = image.astype(np.float32)
    if not mask.any():
        return image.astype(np.uint8, copy=True)
    width = outline_width if outline_width is not None else max(1, round(min(mask.shape) / 256))
    if width < 1:
        raise ValueError(f"outline_width must be at least 1, got {outline_width}")
    tint = np.asarray(colour if colour is not None else contrasting_tint(image[mask]), dtype=np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * tint
    inner = mask & ~_shrink(mask, width)
    outer = _grow(mask, width) & ~mask
    luminance = float(tint @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32))
    out[inner] = tint
    out[outer] = 0.0 if luminance > 140 else 255.0
    return out.clip(0, 255).astype(np.uint8)


def save_gallery(
    path: str | Path,
    images: Sequence[np.ndarray],
    expressions: Sequence[str],
    ground_truths: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    *,
    ious: Sequence[float] | None = None,
) -> Path:
    """One row per sample: image with its expression, ground truth, prediction (with IoU)."""
    n = len(images)
    if not n == len(expressions) == len(ground_truths) == len(predictions):
        raise ValueError("images, expressions, ground truths and predictions must have the same length")
    figure, axes = plt.subplots(n, 3, figsize=(7.5, 2.6 * n), squeeze=False)
    for row in range(n):
        panels = (
            (images[row], "\n".join(textwrap.wrap(f'"{expressions[row]}"', 34))),
            (overlay_mask(images[row], ground_truths[row]), "ground truth"),
            (
                overlay_mask(images[row], predictions[row]),
                "prediction" + (f" (IoU {ious[row]:.2f})" if ious is not None else ""),
            ),
        )
        for column, (picture, title) in enumerate(panels):
            axis = axes[row, column]
            axis.imshow(picture, interpolation="nearest")
            axis.set_title(title, fontsize=8)
            axis.axis("off")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def save_training_curves(path: str | Path, history: Sequence[Mapping[str, Any]]) -> Path:
    """Plot the per-epoch log: training loss, learning rates and validation metrics against the step."""
    steps = [record["step"] for record in history]
    figure, (loss_axis, lr_axis, metric_axis) = plt.subplots(1, 3, figsize=(13, 3.6))
    loss_axis.plot(steps, [record.get("train_loss", float("nan")) for record in history], marker="o")
    loss_axis.set(title="training loss", xlabel="step")
    for key in sorted({k for record in history for k in record if k.startswith("lr_")}):
        lr_axis.plot(steps, [record.get(key, float("nan")) for record in history], marker="o", label=key[3:])
    lr_axis.set(title="learning rate", xlabel="step")
    lr_axis.legend(fontsize=8)
    for key in ("val_overall_iou", "val_mean_iou", "val_precision@0.5", "val_precision@0.9"):
        points = [(record["step"], record[key]) for record in history if key in record]
        if points:
            metric_axis.plot(*zip(*points, strict=True), marker="o", label=key[4:])
    metric_axis.set(title="validation", xlabel="step", ylim=(0, 1))
    metric_axis.legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def feature_energy(feature: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A ``(1, C, h, w)`` or ``(C, h, w)`` feature as an ``(H, W)`` map in [0, 1]: channel-mean of |x|, resized."""
    feature = feature.detach().float()
    if feature.dim() == 4:
        feature = feature[0]
    energy = feature.abs().mean(dim=0, keepdim=True)[None]
    energy = torch.nn.functional.interpolate(energy, size=size, mode="bilinear", align_corners=False)[0, 0]
    energy = energy - energy.min()
    return (energy / energy.max().clamp_min(1e-12)).numpy()


def save_feature_maps(
    directory: str | Path,
    image: np.ndarray,
    stage_maps: Mapping[str, torch.Tensor],
    fusion_maps: Mapping[str, Sequence[torch.Tensor]],
) -> list[Path]:
    """Write the paper's Fig. 6 (stage outputs) and Fig. 7 (per-layer ``F_t`` of each IGF) as PNGs.

    Args:
        directory: output folder (created).
        image: ``(H, W, 3)`` uint8 input image (the maps are drawn over it at its size).
        stage_maps: name -> ``(1, C, h, w)`` feature, e.g. ``{"LGVE-1": E4, "LGVE-2": E_enc, "MLFF": E_dec}``.
        fusion_maps: IGF site -> its ``(F_1, ..., F_L)``.

    Returns:
        the written files: ``fig6_stages.png``, one ``fig7_<site>.png`` per IGF, and one PNG per map.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    size = image.shape[:2]
    written: list[Path] = []

    def grid(name: str, title: str, maps: Sequence[tuple[str, np.ndarray]]) -> None:
        figure, axes = plt.subplots(1, len(maps) + 1, figsize=(2.6 * (len(maps) + 1), 2.8), squeeze=False)
        axes[0, 0].imshow(image)
        axes[0, 0].set_title("input", fontsize=8)
        for axis, (label, energy) in zip(axes[0, 1:], maps, strict=True):
            axis.imshow(image)
            axis.imshow(energy, cmap="jet", alpha=0.55, vmin=0, vmax=1)
            axis.set_title(label, fontsize=8)
        for axis in axes[0]:
            axis.axis("off")
        figure.suptitle(title, fontsize=9)
        figure.tight_layout()
        figure.savefig(directory / name, dpi=100)
        plt.close(figure)
        written.append(directory / name)

    stage_energy = [(name, feature_energy(feature, size)) for name, feature in stage_maps.items()]
    if stage_energy:
        grid("fig6_stages.png", "stage outputs (Fig. 6)", stage_energy)
    for name, energy in stage_energy:
        path = directory / f"stage_{name.lower().replace('-', '')}.png"
        Image.fromarray((plt.get_cmap("jet")(energy)[..., :3] * 255).astype(np.uint8)).save(path)
        written.append(path)
    for site, fusions in fusion_maps.items():
        maps = [(f"F_{t}", feature_energy(feature, size)) for t, feature in enumerate(fusions, start=1)]
        if maps:
            grid(f"fig7_{site}.png", f"IGF at {site}: per-layer fusion F_t (Fig. 7)", maps)
    return written


def heatmap_overlay(image: np.ndarray, energy: np.ndarray, *, alpha: float = 0.55) -> np.ndarray:
    """Blend an ``(H, W)`` map in [0, 1], coloured with the ``jet`` colormap, over an ``(H, W, 3)`` uint8 image."""
    if image.shape[:2] != energy.shape:
        raise ValueError(f"image {image.shape[:2]} and map {energy.shape} differ in size")
    heat = plt.get_cmap("jet")(np.clip(energy, 0.0, 1.0))[..., :3] * 255.0
    return ((1 - alpha) * image.astype(np.float32) + alpha * heat).clip(0, 255).astype(np.uint8)


def _raw_energy(feature: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Channel-mean of ``|feature|``, resized to ``size`` (not rescaled)."""
    feature = feature.detach().float()
    if feature.dim() == 4:
        feature = feature[0]
    energy = feature.abs().mean(dim=0, keepdim=True)[None]
    return torch.nn.functional.interpolate(energy, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def _rescale(energies: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Maps in [0, 1] on one scale: 0 at the lowest value of all of them, 1 at the highest."""
    low = min(float(e.min()) for e in energies)
    high = max(float(e.max()) for e in energies)
    return [(e - low) / max(high - low, 1e-12) for e in energies]


def feature_map_groups(
    image: np.ndarray,
    stage_maps: Mapping[str, torch.Tensor],
    fusion_maps: Mapping[str, Sequence[torch.Tensor]],
) -> dict[str, list[tuple[np.ndarray, str]]]:
    """The Fig. 6 and Fig. 7 maps as pictures, grouped: ``"stages"``, then one group per IGF site.

    Colour (``jet``: blue low, red high) shows the feature's mean absolute activation over its channels
    at each place. The ``F_1 … F_L`` of one site share one scale (0 at the lowest value of all its
    steps, 1 at the highest), so steps compare; each stage map (different features) has its own.

    Args:
        image: ``(H, W, 3)`` uint8 input image (each map is drawn over it at its size).
        stage_maps: name -> ``(1, C, h, w)`` feature (Fig. 6).
        fusion_maps: IGF site -> its ``(F_1, ..., F_L)`` (Fig. 7).

    Returns:
        group -> ``(picture, caption)`` pairs: ``"stages"`` (captioned by the stage names), then each
        site (``"IGF e3: F_1"``, …) in the order of ``fusion_maps``.
    """
    size = image.shape[:2]
    groups: dict[str, list[tuple[np.ndarray, str]]] = {}
    if stage_maps:
        groups["stages"] = [
            (heatmap_overlay(image, _rescale([_raw_energy(feature, size)])[0]), name)
            for name, feature in stage_maps.items()
        ]
    for site, fusions in fusion_maps.items():
        if not fusions:
            continue
        energies = _rescale([_raw_energy(feature, size) for feature in fusions])
        groups[site] = [(heatmap_overlay(image, e), f"IGF {site}: F_{t}") for t, e in enumerate(energies, start=1)]
    return groups


def feature_map_images(
    image: np.ndarray,
    stage_maps: Mapping[str, torch.Tensor],
    fusion_maps: Mapping[str, Sequence[torch.Tensor]],
) -> list[tuple[np.ndarray, str]]:
    """The pictures of :func:`feature_map_groups` in one list: the stage maps, then every site's ``F_t``.

    Returns:
        ``(picture, caption)`` pairs: the stage maps first (captioned by their names), then every
        site's ``F_t`` in order (``"IGF e3: F_1"``, …).
    """
    return [pair for group in feature_map_groups(image, stage_maps, fusion_maps).values() for pair in group]


def colour_bar(width: int = 256, height: int = 14) -> np.ndarray:
    """The colour scale of the heat maps (``jet``, low on the left, high on the right) as ``(height, width, 3)``."""
    ramp = plt.get_cmap("jet")(np.linspace(0.0, 1.0, width))[:, :3] * 255.0
    return np.repeat(ramp[None].astype(np.uint8), height, axis=0)
