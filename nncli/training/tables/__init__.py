"""A table's columns → model inputs and labels, with statistics from the training split only.

    prep = read_prepared(path, cfg, where, target_kind)      # columns chosen, labels mapped, rows kept
    spec = fit(prep, train_rows)                             # one-hot categories, fill values
    x = apply_preprocessing(spec, prep.inputs)               # (N, n_inputs) float64

The data section decides (``nncli.config.schema.DataConfig``): ``features`` or ``drop`` (names or
0-based indices; negative from the end), ``target_column``, ``categorical`` (one-hot encoded),
``unknown_category`` (``error`` | ``ignore``), ``label_map``, ``missing`` (``error`` | ``drop`` |
``mean`` | ``median``) and ``missing_values`` (the cells that count as missing).

One idea per file:

- reading a file: ``read`` (``read_table``, the engines and their fallback), ``head`` (the header
  and width), ``table`` (the columns read), ``engines`` (which reader; shared sizes), ``csv_python``,
  ``csv_pyarrow``, ``csv_pandas``, ``parquet`` (one reader each);
- a table for training: ``table_files`` (what is a table), ``columns`` (choosing columns by name or
  index), ``labels`` (label texts → classes, ``label_map``), ``prepared`` (read, missing rows,
  labels), ``fitting`` (the training split's categories and fill values);
- the run's preprocessing: ``spec`` (its format, ``nncli.tabular/1``), ``encode`` (a spec applied),
  ``blocks`` (columns that share one float block), ``raw_rows`` (a new file's columns and cells for
  ``predict`` and ``eval``), ``eval_table`` (a labelled file for ``eval --data``).

The names below are re-exported for convenience; nncli's own modules import each from its file.
"""

from nncli.training.tables.blocks import block_of, take
from nncli.training.tables.columns import choose_columns, column_index
from nncli.training.tables.encode import apply_preprocessing
from nncli.training.tables.engines import BLOCK_BYTES, CHUNK_ROWS, ENGINES, count_lines, pick_engine
from nncli.training.tables.eval_table import read_for_run
from nncli.training.tables.fitting import fit
from nncli.training.tables.head import Head, read_head
from nncli.training.tables.labels import declared_classes, encode_labels, label_key, map_labels
from nncli.training.tables.prepared import Prepared, read_prepared
from nncli.training.tables.raw_rows import cells_to_values, input_positions
from nncli.training.tables.read import read_table
from nncli.training.tables.spec import FORMAT, n_inputs
from nncli.training.tables.table import Table
from nncli.training.tables.table_files import TABLE_KEYS, TABLE_SUFFIXES, is_table

__all__ = [
    "BLOCK_BYTES",
    "CHUNK_ROWS",
    "ENGINES",
    "FORMAT",
    "TABLE_KEYS",
    "TABLE_SUFFIXES",
    "Head",
    "Prepared",
    "Table",
    "apply_preprocessing",
    "block_of",
    "cells_to_values",
    "choose_columns",
    "column_index",
    "count_lines",
    "declared_classes",
    "encode_labels",
    "fit",
    "input_positions",
    "is_table",
    "label_key",
    "map_labels",
    "n_inputs",
    "pick_engine",
    "read_for_run",
    "read_head",
    "read_prepared",
    "read_table",
    "take",
]
