"""``python -m dcmfnet.train`` and ``torchrun ... -m dcmfnet.train``: the ``dcmfnet train`` command.

A shim above the library, beside :mod:`dcmfnet.commands`; the training loop is :mod:`dcmfnet.training`.
"""

import sys

from dcmfnet.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
