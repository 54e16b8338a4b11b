"""Segment the object an expression refers to in one image, and draw the mask over it.

Usage::

    dcmfnet predict --model model/ --image photo.jpg --expression "the big red circle" \\
        --output prediction.png [--mask-output mask.png] [--maps maps/]
    dcmfnet predict --checkpoint runs/cpu/best.pt --image photo.jpg --expression "..." --output prediction.png

``--model`` takes a folder written by ``dcmfnet export``; ``--checkpoint`` a training checkpoint.
The image is read as a viewer shows it (EXIF orientation, 16-bit greyscale, transparency over
white; see :mod:`dcmfnet.images`) and the mask comes out at its size. Words the model cannot read
(cut by the token budget, unknown to the text encoder) are reported on stderr. ``--maps DIR``
also writes the paper's Fig. 6 (the LGVE-1, LGVE-2 and MLFF stage outputs) and Fig. 7 (the
per-layer fusion maps ``F_t`` of every IGF) as heat maps over the image.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dcmfnet.commands.base import add_device_argument, add_model_arguments, require_parent_folder, run_command
from dcmfnet.images import DEFAULT_MAX_PIXELS
from dcmfnet.inference import Segmenter
from dcmfnet.visualize import overlay_mask, save_feature_maps

__all__ = ["add_arguments", "load_segmenter", "main", "run"]


def load_segmenter(args: argparse.Namespace, **options: Any) -> Segmenter:
    """The :class:`~dcmfnet.inference.Segmenter` of ``--model`` or ``--checkpoint``."""
    if args.model is not None:
        return Segmenter.from_pretrained(args.model, **options)
    return Segmenter.from_checkpoint(args.checkpoint, **options)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``predict`` subcommand's arguments."""
    add_model_arguments(parser)
    parser.add_argument("--image", required=True, help="input image")
    parser.add_argument("--expression", required=True, help="referring expression")
    parser.add_argument("--output", required=True, help="PNG of the mask overlaid on the image (its folder must exist)")
    parser.add_argument("--maps", default=None, help="folder for the Fig. 6/7 feature maps (created)")
    parser.add_argument("--mask-output", default=None, help="also the binary mask as a PNG (its folder must exist)")
    add_device_argument(parser)
    parser.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (default: %(default)s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dcmfnet.predict``: the same as ``dcmfnet predict``."""
    return run_command(__doc__, add_arguments, run, argv, prog="dcmfnet predict")


def run(args: argparse.Namespace) -> int:
    """Predict with the parsed arguments; returns the exit status."""
    require_parent_folder("--output", args.output)
    require_parent_folder("--mask-output", args.mask_output)
    segmenter = load_segmenter(args, device=args.device, max_pixels=args.max_pixels)
    image = segmenter.load_image(args.image)  # read once: segment() takes the RGB array as it is
    result = segmenter.segment(image, args.expression, return_maps=args.maps is not None)
    for warning in result.warnings:
        print(f"dcmfnet predict: warning: {warning}", file=sys.stderr)
    destination = Path(args.output)
    Image.fromarray(overlay_mask(image, result.mask)).save(destination)
    print(f'"{args.expression}": {int(result.mask.sum())} of {result.mask.size} pixels -> {destination}')
    if args.mask_output:
        Image.fromarray(result.mask.astype(np.uint8) * 255).save(args.mask_output)
    if args.maps:
        assert result.stage_maps is not None and result.fusion_maps is not None
        written = save_feature_maps(args.maps, image, result.stage_maps, result.fusion_maps)
        print(f"{len(written)} feature maps -> {args.maps}")
    return 0
