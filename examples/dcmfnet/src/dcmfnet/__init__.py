"""DCMFNet, the referring image segmentation network of the paper, built on ``igf``.

Model side (this package's public API):

- :class:`~dcmfnet.model.DCMFNet`, :class:`~dcmfnet.model.DCMFNetOutput`
- :class:`~dcmfnet.config.ModelConfig`, :func:`~dcmfnet.config.build_model`,
  :func:`~dcmfnet.config.load_model_config`

Example:
    >>> import torch
    >>> from dcmfnet import build_model, load_model_config
    >>> model = build_model(load_model_config("model_cpu"))
    >>> text = model.tokenize(["the red circle", "small blue square"], max_length=8)
    >>> model(torch.randn(2, 3, 64, 64), text).shape
    torch.Size([2, 1, 64, 64])
"""

__version__ = "0.2.0"

from dcmfnet.config import ModelConfig, build_model, load_model_config
from dcmfnet.model import DCMFNet, DCMFNetOutput

__all__ = ["DCMFNet", "DCMFNetOutput", "ModelConfig", "__version__", "build_model", "load_model_config"]
