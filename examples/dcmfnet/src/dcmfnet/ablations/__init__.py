"""The paper's ablations (Tables 2, 4, 5, 6) as runs of the trainer, with confidence intervals over seeds.

- :mod:`~dcmfnet.ablations.tables`: every row as model switches, with the paper's numbers.
- :mod:`~dcmfnet.ablations.runner`: trains and evaluates the runs in subprocesses.
- :mod:`~dcmfnet.ablations.records`: ``runs.jsonl``, one record per run.
- :mod:`~dcmfnet.ablations.statistics`: Student-t intervals and paired differences.
- :mod:`~dcmfnet.ablations.seeding`: which rows need another seed for a narrow enough paired CI.
- :mod:`~dcmfnet.ablations.summary`: each row over its seeds (mean, CI, paired difference).
- :mod:`~dcmfnet.ablations.report` and :mod:`~dcmfnet.ablations.plots`: markdown tables and figures.
- :mod:`~dcmfnet.ablations.diagnose`: a row beside the full model (loss curves, gradients and scales at init).

The ``dcmfnet ablate`` subcommand is :mod:`dcmfnet.commands.ablate`.
"""
