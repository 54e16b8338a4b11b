"""``python -m dcmfnet.evaluate`` and ``torchrun ... -m dcmfnet.evaluate``: the ``dcmfnet evaluate`` command.

A shim above the library, beside :mod:`dcmfnet.commands`; the evaluation itself is :mod:`dcmfnet.evaluation`.
"""

import sys

from dcmfnet.commands.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
