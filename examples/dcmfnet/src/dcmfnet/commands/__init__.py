"""The ``dcmfnet`` command: the top floor, above the library.

- :mod:`~dcmfnet.commands.main`: the dispatcher (the ``dcmfnet`` console script, ``python -m dcmfnet``).
- :mod:`~dcmfnet.commands.base`: what every subcommand shares (overrides, one-line user errors, exit codes).
- one module per subcommand: :mod:`~dcmfnet.commands.train`, :mod:`~dcmfnet.commands.evaluate`,
  :mod:`~dcmfnet.commands.predict`, :mod:`~dcmfnet.commands.export`, :mod:`~dcmfnet.commands.demo`,
  :mod:`~dcmfnet.commands.ablate`, :mod:`~dcmfnet.commands.stats`.

Only this package imports ``argparse``, prints for the user and chooses exit codes; the modules
below take typed arguments and raise :mod:`dcmfnet.errors`.
"""
