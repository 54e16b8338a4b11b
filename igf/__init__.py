"""igf: cross-modal fusion layers from DCMFNet (Iterative Gated Fusion).

Public API:

- :class:`IterativeGatedFusion` -- the IGF module (paper §3.1, Eq. 1-4).
- :class:`BilinearFusionUnit` -- its multi-head bilinear fusion unit (Eq. 2).
- :class:`ASGate`, :class:`ConvGRUGate`, :class:`ConvLSTMGate` -- its gating units (Eq. 3, Table 6).
- :class:`IGFOutput`, :data:`OUTPUT_MODES` / :data:`OutputMode`, :data:`GATES`, :class:`GateFactory`.

Modules:

- :mod:`igf.fused` -- the memory-lean autograd functions behind ``fused=True`` (the default).
- :mod:`igf.functional` -- ``masked_mean`` (padding selected away) and ``resize_to`` (bilinear).
- :mod:`igf.saved_activations` -- what one training forward saves for backward (SPEC §6).
"""

from igf.fusion import BilinearFusionUnit
from igf.gates import GATES, ASGate, ConvGRUGate, ConvLSTMGate, GateFactory
from igf.iterative import OUTPUT_MODES, IGFOutput, IterativeGatedFusion, OutputMode

__version__ = "0.1.0"

__all__ = [
    "GATES",
    "OUTPUT_MODES",
    "ASGate",
    "BilinearFusionUnit",
    "ConvGRUGate",
    "ConvLSTMGate",
    "GateFactory",
    "IGFOutput",
    "IterativeGatedFusion",
    "OutputMode",
    "__version__",
]
