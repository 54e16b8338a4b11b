"""DCMFNet, the referring image segmentation network of the paper, built on ``igf``.

Model side (this package's public API):

- :class:`~examples.dcmfnet.model.DCMFNet`, :class:`~examples.dcmfnet.model.DCMFNetOutput`
- :class:`~examples.dcmfnet.config.ModelConfig`, :func:`~examples.dcmfnet.config.build_model`,
  :func:`~examples.dcmfnet.config.load_model_config`

Example:
    >>> import torch
    >>> from examples.dcmfnet import build_model, load_model_config
    >>> model = build_model(load_model_config("examples/dcmfnet/configs/model_cpu.yaml"))
    >>> text = model.tokenize(["the red circle", "small blue square"], max_length=8)
    >>> model(torch.randn(2, 3, 64, 64), text).shape
    torch.Size([2, 1, 64, 64])
"""

from examples.dcmfnet.config import ModelConfig, build_model, load_model_config
from examples.dcmfnet.model import DCMFNet, DCMFNetOutput

__all__ = ["DCMFNet", "DCMFNetOutput", "ModelConfig", "build_model", "load_model_config"]
