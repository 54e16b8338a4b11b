"""``python -m dcmfnet`` is the ``dcmfnet`` command."""

import sys

from dcmfnet.commands.main import main

sys.exit(main())
