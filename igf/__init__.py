"""igf: cross-modal fusion layers from DCMFNet (Iterative Gated Fusion).

Public API:

- :class:`IterativeGatedFusion` -- the IGF module (paper §3.1, Eq. 1-4).
- :class:`BilinearFusionUnit` -- its multi-head bilinear fusion unit (Eq. 2).
- :class:`ASGate`, :class:`ConvGRUGate`, :class:`ConvLSTMGate` -- its gating units (Eq. 3, Table 6).
- :class:`IGFOutput`, :data:`OUTPUT_MODES` / :data:`OutputMode`, :data:`GATES`, :class:`GateFactory`.
- :class:`FiLM`, :class:`PixelWordAttention`, :class:`ConcatFusion` -- IGF's peers, called like IGF.
- :class:`FusionLayer` -- the call shape they share; :func:`build_fusion_layer` / :data:`FUSION_LAYERS` -- one by name.

Modules:

- :mod:`igf.fused` -- the memory-lean autograd functions behind ``fused=True`` (the default).
- :mod:`igf.cpu_tanh` -- which ``tanh`` igf computes on a CPU (``torch.tanh`` or its sigmoid form), and the switch.
- :mod:`igf.spatial` -- the spatial rank of a layer (1-D, 2-D, 3-D): convolutions, kernel sizes, shapes.
- :mod:`igf.functional` -- ``masked_mean`` and ``masked_attention`` (padding selected away), ``resize_to``.
- :mod:`igf.saved_activations` -- what one training forward saves for backward (the docs' saved-activation measurement).
"""

from igf.concat import ConcatFusion
from igf.film import FiLM
from igf.fusion import BilinearFusionUnit
from igf.gates import GATES, ASGate, ConvGRUGate, ConvLSTMGate, GateFactory
from igf.iterative import OUTPUT_MODES, IGFOutput, IterativeGatedFusion, OutputMode
from igf.pixel_word_attention import PixelWordAttention
from igf.protocol import FusionLayer
from igf.registry import FUSION_LAYERS, build_fusion_layer

__version__ = "0.1.0"

__all__ = [
    "FUSION_LAYERS",
    "GATES",
    "OUTPUT_MODES",
    "ASGate",
    "BilinearFusionUnit",
    "ConcatFusion",
    "ConvGRUGate",
    "ConvLSTMGate",
    "FiLM",
    "FusionLayer",
    "GateFactory",
    "IGFOutput",
    "IterativeGatedFusion",
    "OutputMode",
    "PixelWordAttention",
    "__version__",
    "build_fusion_layer",
]
