"""Serve the browser demo: type an expression, see the mask and the paper's Fig. 6/7 maps.

Usage::

    pip install "./examples/dcmfnet[demo]"        # Gradio, the demo's only extra dependency
    dcmfnet demo --model model                     # a folder written by `dcmfnet export`
    dcmfnet demo --checkpoint runs/cpu/best.pt --port 7861

Then open the URL it prints (default http://127.0.0.1:7860). The model is loaded once. The page
listens on this machine only unless ``--host 0.0.0.0`` is given. No model yet? Train the main
job and export it::

    dcmfnet train --config cpu_synthetic --output-dir runs/cpu
    dcmfnet export --checkpoint runs/cpu/best.pt --output-dir model
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import torch

from dcmfnet.commands.base import add_device_argument, run_command
from dcmfnet.errors import InputError
from dcmfnet.inference import Segmenter

__all__ = ["add_arguments", "main", "run"]

#: What to do without a model (said by ``dcmfnet demo`` with neither ``--model`` nor ``--checkpoint``).
NO_MODEL = (
    "give a model: --model DIR (a folder written by `dcmfnet export`) or --checkpoint FILE. To get one, train "
    "the main job and export it: `dcmfnet train --config cpu_synthetic --output-dir runs/cpu`, then "
    "`dcmfnet export --checkpoint runs/cpu/best.pt --output-dir model`, then `dcmfnet demo --model model`"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``demo`` subcommand's arguments (Gradio is not imported here: ``--help`` works without it)."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", default=None, help="model folder written by `dcmfnet export`")
    source.add_argument("--checkpoint", default=None, help="training checkpoint (best.pt or last.pt)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=7860, help="TCP port (default 7860)")
    add_device_argument(parser)
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads of torch (default: torch's; 1 suits a busy machine)"
    )
    parser.add_argument("--max-pixels", type=int, default=None, help="largest image in pixels (default 4096²)")
    parser.add_argument("--max-expression-chars", type=int, default=None, help="longest expression (default 200)")


def main(argv: Sequence[str] | None = None) -> int:
    """The same as ``dcmfnet demo``."""
    return run_command(__doc__, add_arguments, run, argv, prog="dcmfnet demo")


def run(args: argparse.Namespace) -> int:
    """Load the model once and serve the page until interrupted; returns the exit status."""
    if args.model is None and args.checkpoint is None:
        raise InputError(NO_MODEL)
    try:
        from dcmfnet import demo  # deferred: it imports Gradio, an optional dependency (dcmfnet[demo])
    except ImportError as error:
        raise InputError(f"the demo needs Gradio ({error}): pip install 'dcmfnet[demo]'") from error

    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    options = {"device": args.device, "max_pixels": args.max_pixels or demo.DEMO_MAX_PIXELS}
    if args.model is not None:
        segmenter = Segmenter.from_pretrained(args.model, **options)
    else:
        segmenter = Segmenter.from_checkpoint(args.checkpoint, **options)
    limits = demo.Limits(max_expression_chars=args.max_expression_chars or demo.Limits.max_expression_chars)
    app = demo.build_app(segmenter, limits=limits)
    try:
        demo.launch(app, host=args.host, port=args.port, limits=limits)
    except OSError as error:  # the port is taken, or the address is not this machine's
        raise InputError(f"cannot serve on {args.host}:{args.port} ({error}); choose another --port") from error
    return 0
