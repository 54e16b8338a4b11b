"""The rows of the paper's Tables 2, 4, 5 and 6 as model switches, with the paper's numbers (RefCOCO val),
and this project's Table P (IGF against the fusion layers people use; not in the paper).

Each :class:`Row` names the switches that differ from the full model (:data:`FULL_MODEL`: LGVE-1 at
E3+E4, LGVE-2 on, IGF in the decoder, L = 5, ``all_fusions`` output, ASGate) and the paper's values
on RefCOCO val in percent. Rows with the same ``key`` are one model and share their runs: the full
model is row 4 (and 12) of Table 2, L = 5 of Table 4, Conv([F_1..F_5]) of Table 5 and ASGate of
Table 6; rows 7 and 8 of Table 2 are both "without MLFF". Table P's ``no-fusion`` row is Table 2's row 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FULL_KEY",
    "FULL_MODEL",
    "LAYER_SWITCHES",
    "PRECISION_KEYS",
    "TABLES",
    "Row",
    "Table",
    "TableId",
    "rows_by_key",
    "table_id",
]

#: A table's name: the paper's number (2, 4, 5, 6) or ``"P"`` (this project's Table P).
TableId = int | str

#: The paper's model (Fig. 2; IGF at every site, reading the sentence feature): every row is this with its ``changes``.
FULL_MODEL: Mapping[str, Any] = {
    "lgve1": "e3_e4",
    "lgve2": True,
    "mlff": "igf",
    "igf_layers": 5,
    "igf_output_mode": "all_fusions",
    "igf_gate": "asgate",
    "fusion_layer": "igf",
    "igf_token_pooling": "mean",
}
FULL_KEY = "full"
#: Switches that only one layer reads, set by that layer's rows beyond :data:`FULL_MODEL` (Table P's second PWAM
#: row); every other run takes the value given here, which ``dcmfnet ablate`` checks its config holds.
LAYER_SWITCHES: Mapping[str, Any] = {"pwam_identity_init": True}
PRECISION_KEYS = tuple(f"precision@{t}" for t in ("0.5", "0.6", "0.7", "0.8", "0.9"))


@dataclass(frozen=True)
class Row:
    """One row of a paper table.

    Attributes:
        key: The model's name, unique per model; rows with the same key share their runs.
        paper_row: The row as the paper labels it (``"4"``, ``"L = 3"``, ``"Conv(G_5)"``).
        changes: Model fields (:class:`~dcmfnet.config.ModelConfig`) that differ from :data:`FULL_MODEL` (or
            from :data:`LAYER_SWITCHES`).
        paper: The paper's values in percent, keyed like our metrics (``overall_iou``, ``precision@0.5`` …).
        paper_params: The paper's parameter count in millions (Table 6), if it gives one.
    """

    key: str
    paper_row: str
    changes: Mapping[str, Any]
    paper: Mapping[str, float]
    paper_params: float | None = None

    @property
    def is_full(self) -> bool:
        return self.key == FULL_KEY

    def switches(self) -> dict[str, Any]:
        """Every switch of the model: :data:`FULL_MODEL` updated by :attr:`changes`."""
        return {**FULL_MODEL, **self.changes}

    def overrides(self) -> list[str]:
        """The run-config overrides that build this model (``model.lgve1=none`` …)."""
        return [f"model.{name}={str(value).lower() if isinstance(value, bool) else value}"
                for name, value in self.switches().items()]  # fmt: skip

    def describe(self) -> str:
        """The changes in a few words (``lgve1=none, mlff=none``), or ``full model``."""
        return ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in self.changes.items()) or (
            "full model"
        )


@dataclass(frozen=True)
class Table:
    """A paper table: its rows in the paper's order, and what its plot puts on the x axis.

    Attributes:
        number: The paper's table number, or ``"P"`` for Table P.
        title: The paper's caption.
        rows: The rows, in the paper's order.
        x_axis: ``"row"`` (one tick per row), ``"igf_layers"`` (L), ``"parameters"`` or ``"cost"``
            (training time per step: a quality-against-cost view, and the report adds the cost columns).
    """

    number: TableId
    title: str
    rows: tuple[Row, ...]
    x_axis: str = "row"

    def keys(self) -> list[str]:
        """The distinct models of the table, in the paper's order."""
        return list(dict.fromkeys(row.key for row in self.rows))


def _precisions(*values: float) -> dict[str, float]:
    return dict(zip(PRECISION_KEYS, values, strict=True))


def _t2(p5: float, p6: float, p7: float, p8: float, p9: float, oiou: float) -> dict[str, float]:
    return {**_precisions(p5, p6, p7, p8, p9), "overall_iou": oiou}


def _t4(oiou: float, p5: float, p7: float, p9: float) -> dict[str, float]:
    return {"overall_iou": oiou, "precision@0.5": p5, "precision@0.7": p7, "precision@0.9": p9}


def _t5(oiou: float, p5: float, p7: float) -> dict[str, float]:
    return {"overall_iou": oiou, "precision@0.5": p5, "precision@0.7": p7}


_FULL_T2 = _t2(83.81, 80.30, 74.78, 63.83, 34.02, 71.00)
_NO_MLFF_T2 = _t2(83.14, 79.35, 71.85, 54.26, 20.89, 68.66)

# Table 2: Ablation studies of deep cross-modal fusion network on the RefCOCO val set.
#   row  key             changes                                   Prec@0.5 @0.6  @0.7   @0.8   @0.9   oIoU
TABLE_2 = Table(2, "Ablation studies of deep cross-modal fusion network (LGVE-1, LGVE-2, MLFF)", (
    Row("no-fusion",    "1",  {"lgve1": "none", "lgve2": False, "mlff": "none"},
        _t2(79.32, 74.28, 65.30, 41.39, 16.13, 66.92)),
    Row("no-lgve1",     "2",  {"lgve1": "none"},            _t2(81.19, 77.30, 71.43, 59.38, 30.58, 69.19)),
    Row("lgve1-e4",     "3",  {"lgve1": "e4"},              _t2(81.60, 77.97, 72.16, 60.48, 31.47, 69.70)),
    Row(FULL_KEY,       "4",  {},                           _FULL_T2),
    Row("lgve1-e2e3e4", "5",  {"lgve1": "e2_e3_e4"},        _t2(82.80, 79.27, 73.45, 62.18, 32.29, 69.73)),
    Row("no-lgve2",     "6",  {"lgve2": False},             _t2(83.40, 80.09, 74.59, 62.94, 33.71, 70.74)),
    Row("no-mlff",      "7",  {"mlff": "none"},             _NO_MLFF_T2),
    Row("no-mlff",      "8",  {"mlff": "none"},             _NO_MLFF_T2),
    Row("mlff-concat",  "9",  {"mlff": "concat"},           _t2(83.39, 79.72, 73.32, 60.04, 26.91, 70.23)),
    Row("mlff-gated",   "10", {"mlff": "gated"},            _t2(83.25, 79.68, 73.57, 61.10, 28.60, 70.40)),
    Row("mlff-bigated", "11", {"mlff": "bidirectional_gated"}, _t2(83.63, 79.92, 74.24, 62.03, 29.06, 70.55)),
    Row(FULL_KEY,       "12", {},                           _FULL_T2),
))  # fmt: skip

# Table 4: Ablation studies of depth L of IGF layers.
#   L   key      changes                 oIoU   Prec@0.5 @0.7  @0.9
TABLE_4 = Table(4, "Ablation studies of depth L of IGF layers", (
    Row("L1",     "L = 1", {"igf_layers": 1}, _t4(69.91, 82.67, 72.99, 31.08)),
    Row("L2",     "L = 2", {"igf_layers": 2}, _t4(70.37, 83.34, 74.66, 33.19)),
    Row("L3",     "L = 3", {"igf_layers": 3}, _t4(70.48, 83.35, 74.01, 33.21)),
    Row("L4",     "L = 4", {"igf_layers": 4}, _t4(70.68, 83.58, 74.86, 33.39)),
    Row(FULL_KEY, "L = 5", {},                _t4(71.00, 83.81, 74.78, 34.02)),
    Row("L6",     "L = 6", {"igf_layers": 6}, _t4(70.36, 83.35, 74.00, 33.01)),
    Row("L7",     "L = 7", {"igf_layers": 7}, _t4(70.33, 83.64, 74.54, 33.14)),
), x_axis="igf_layers")  # fmt: skip

# Table 5: Ablation studies of the output feature IGF* of IGF layers.
#   settings                         key                changes                                       oIoU  P@0.5  P@0.7
TABLE_5 = Table(5, "Ablation studies of the output feature IGF* of IGF layers", (
    Row("out-last_gate",   "Conv(G_5)", {"igf_output_mode": "last_gate"},   _t5(70.15, 83.39, 73.88)),
    Row("out-last_fusion", "Conv(F_5)", {"igf_output_mode": "last_fusion"}, _t5(70.25, 83.50, 74.31)),
    Row("out-fusions_and_last_gate", "Conv([F_1; F_2; F_3; F_4; G_5])",
        {"igf_output_mode": "fusions_and_last_gate"},                       _t5(70.30, 83.60, 74.55)),
    Row(FULL_KEY,          "Conv([F_1; F_2; F_3; F_4; F_5])", {},           _t5(71.00, 83.81, 74.78)),
))  # fmt: skip

# Table 6: Ablation studies of the gating unit of IGF layers.
#   module          key              changes                     oIoU    Prec@0.5        Params
TABLE_6 = Table(6, "Ablation studies of the gating unit of IGF layers", (
    Row("gate-convlstm", "ConvLSTMCell", {"igf_gate": "convlstm"},
        {"overall_iou": 70.17, "precision@0.5": 82.94}, paper_params=4.72),
    Row("gate-convgru",  "ConvGRUCell",  {"igf_gate": "convgru"},
        {"overall_iou": 70.61, "precision@0.5": 83.45}, paper_params=3.54),
    Row(FULL_KEY,        "ASGate",       {},
        {"overall_iou": 71.00, "precision@0.5": 83.81}, paper_params=1.77),
), x_axis="parameters")  # fmt: skip

_NO_FUSION = TABLE_2.rows[0]

# Table P (this project's, not the paper's): every IGF site (LGVE-1 at E3 and E4, LGVE-2, MLFF) built from one
# fusion layer of igf at the same widths (model.fusion_layer), beside IGF reading the words and no fusion at all.
# The paper reports no such table: the rows carry no paper values.
TABLE_P = Table("P", "IGF against the fusion layers people use, at every IGF site", (
    Row(FULL_KEY,      "IGF",         {},                                {}),
    Row("peer-film",   "FiLM",        {"fusion_layer": "film"},          {}),
    Row("peer-pwam",   "PWAM",        {"fusion_layer": "pwam"},          {}),
    Row("peer-pwam-default-init", "PWAM (default init)", {"fusion_layer": "pwam", "pwam_identity_init": False}, {}),
    Row("peer-concat", "Concat",      {"fusion_layer": "concat"},        {}),
    Row("igf-words",   "IGF (words)", {"igf_token_pooling": "attention"}, {}),
    Row(_NO_FUSION.key, "no fusion",  _NO_FUSION.changes,                {}),
), x_axis="cost")  # fmt: skip

#: The tables by number.
TABLES: dict[TableId, Table] = {table.number: table for table in (TABLE_2, TABLE_4, TABLE_5, TABLE_6, TABLE_P)}


def table_id(text: str) -> TableId:
    """A table's name as typed (``"2"``, ``"p"``) -> its key in :data:`TABLES` (``2``, ``"P"``).

    Raises:
        ValueError: No such table (the message lists the valid ones).
    """
    key: TableId = int(text) if text.strip().isdigit() else text.strip().upper()
    if key not in TABLES:
        raise ValueError(f"unknown table {text!r}; valid: {', '.join(map(str, TABLES))}")
    return key


def rows_by_key() -> dict[str, Row]:
    """Every distinct model of every table by key (the first row that names it)."""
    found: dict[str, Row] = {}
    for table in TABLES.values():
        for row in table.rows:
            found.setdefault(row.key, row)
    return found
