"""``python -m dcmfnet`` is the ``dcmfnet`` command."""

import sys

from dcmfnet.cli import main

sys.exit(main())
