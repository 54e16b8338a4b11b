"""Segment the object an expression refers to in one image, and draw the mask over it.

Usage::

    dcmfnet predict --checkpoint runs/cpu/best.pt --image scene.png \\
        --expression "the big red circle" --output prediction.png [--maps maps/]

``--maps DIR`` also writes the paper's Fig. 6 (the LGVE-1, LGVE-2 and MLFF stage outputs) and
Fig. 7 (the per-layer fusion maps ``F_t`` of every IGF) as heat maps over the image.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dcmfnet.command_line import run_command
from dcmfnet.data.build import max_tokens_for
from dcmfnet.data.transforms import ReferringTransform
from dcmfnet.distributed import setup
from dcmfnet.evaluate import autocast, load_model_from_checkpoint
from dcmfnet.metrics import masks_from_logits
from dcmfnet.visualize import overlay_mask, save_feature_maps

__all__ = ["main", "read_image"]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an ``(H, W, 3)`` uint8 RGB array.

    Raises:
        FileNotFoundError: the file does not exist.
        OSError: the file is not a readable image (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        with Image.open(path) as handle:
            return np.array(handle.convert("RGB"))
    except (OSError, UnidentifiedImageError) as error:
        raise OSError(f"cannot read image {path}: {error}") from error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``predict`` subcommand's arguments."""
    parser.add_argument("--checkpoint", required=True, help="checkpoint file")
    parser.add_argument("--image", required=True, help="input image")
    parser.add_argument("--expression", required=True, help="referring expression")
    parser.add_argument("--output", required=True, help="PNG of the mask overlaid on the image")
    parser.add_argument("--maps", default=None, help="folder for the Fig. 6/7 feature maps")
    parser.add_argument("--mask-output", default=None, help="also save the binary mask as a PNG")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dcmfnet.predict``: the same as ``dcmfnet predict``."""
    return run_command(__doc__, add_arguments, run, argv, prog="dcmfnet predict")


@torch.no_grad()
def run(args: argparse.Namespace) -> int:
    """Predict with the parsed arguments; returns the exit status."""
    if not args.expression.strip():
        raise SystemExit("error: --expression is empty; say which object to segment")
    image = read_image(args.image)
    device = setup(device=args.device).device
    model, cfg, _ = load_model_from_checkpoint(args.checkpoint, device=device)
    transform = ReferringTransform(size=cfg.data.image_size)
    pixels, _, expression = transform(image, np.zeros(image.shape[:2], dtype=bool), args.expression)
    text = {k: v.to(device) for k, v in model.tokenize([expression], max_tokens_for(cfg.data)).items()}
    with autocast(device, cfg.train.precision):
        output = model(pixels[None].to(device), text, return_intermediates=True)
    (mask,) = masks_from_logits(output.logits.float(), [image.shape[:2]])
    mask_array = mask.cpu().numpy()
    destination = Path(args.output)
    destination.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(overlay_mask(image, mask_array)).save(destination)
    print(f'"{args.expression}": {int(mask_array.sum())} of {mask_array.size} pixels -> {destination}')
    if args.mask_output:
        Image.fromarray((mask_array * 255).astype(np.uint8)).save(args.mask_output)
    if args.maps:
        fusions = {site: [f.cpu() for f in record.fusions] for site, record in output.igf.items()}
        stages = {name: feature.cpu() for name, feature in output.stage_maps().items()}
        written = save_feature_maps(args.maps, image, stages, fusions)
        print(f"{len(written)} feature maps -> {args.maps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
