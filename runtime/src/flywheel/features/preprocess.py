"""Preprocessing fitted on the training split only, saved with the model.

Numbers are standardised with the training split's mean and standard deviation; a null
becomes the training mean (0 after standardising), and a column that had nulls in
training gets a 0/1 "was null" indicator. Categories get an index into the training
split's vocabulary (most frequent first, at most `MAX_CATEGORIES`); index 0 is "unknown
or null". The built-in models take the categories one-hot; `category_indices` gives the
same indices for embedding layers.

A categorical column can instead be hashed (the hashing trick, `buckets` in the spec):
its one-hot has `buckets + 1` columns, column 0 for null and `1 + crc32(text) % buckets`
for any text. No vocabulary is kept, so a category first seen at serving time lands in
a bucket (shared with whatever else hashes there) instead of failing or becoming
"unknown", and a column with far more categories than `MAX_CATEGORIES` keeps them apart.

    state = Preprocessor.fit(train_table, ["plan", "charges"]).to_json()
    Preprocessor.from_json(state).transform(rows)  # float32 [rows, width]

The state is plain JSON (`preprocessing.json` beside the model), so a server applies
exactly the transform training used without importing training code.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MAX_CATEGORIES = 64
NUMERIC = "numeric"
CATEGORICAL = "categorical"
HASHED = "hashed"


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    kind: str
    mean: float = 0.0
    std: float = 1.0
    missing_indicator: bool = False
    vocabulary: tuple[str, ...] = ()
    buckets: int = 0  # hashed only

    @property
    def width(self) -> int:
        if self.kind == CATEGORICAL:
            return len(self.vocabulary) + 1
        if self.kind == HASHED:
            return self.buckets + 1
        return 2 if self.missing_indicator else 1

    def output_names(self) -> list[str]:
        if self.kind == HASHED:
            return [f"{self.name}=<null>"] + [f"{self.name}#{i}" for i in range(self.buckets)]
        if self.kind == CATEGORICAL:
            return [f"{self.name}=<unknown>"] + [f"{self.name}={v}" for v in self.vocabulary]
        return [self.name] + ([f"{self.name}:null"] if self.missing_indicator else [])


@dataclasses.dataclass(frozen=True)
class Preprocessor:
    columns: tuple[Column, ...]

    @classmethod
    def fit(
        cls, table: Any, features: list[str], hashed: dict[str, int] | None = None
    ) -> Preprocessor:
        """Statistics of `table` (the training split, and nothing else); the columns in
        `hashed` (name -> bucket count) take the hashing trick instead."""
        hashed = hashed or {}
        return cls(
            tuple(
                Column(name, HASHED, buckets=hashed[name])
                if name in hashed
                else _fit_column(name, table[name])
                for name in features
            )
        )

    @property
    def width(self) -> int:
        return sum(c.width for c in self.columns)

    def output_names(self) -> list[str]:
        return [n for c in self.columns for n in c.output_names()]

    def transform(self, table: Any) -> Any:
        """Rows (a pa.Table, or a dict of column -> values) -> float32 [rows, width]."""
        table = _as_table(table)
        # One preallocated matrix, each column written into its slice: no stacking copies.
        out = np.zeros((table.num_rows, self.width), dtype=np.float32)
        at = 0
        for c in self.columns:
            if c.kind in (CATEGORICAL, HASHED):
                index = _indices(c, table[c.name])
                out[np.arange(len(index)), at + index] = 1.0
            else:
                values, valid = _numbers(table[c.name])
                scaled = (values - c.mean) / c.std
                scaled[~valid] = 0.0
                out[:, at] = scaled
                if c.missing_indicator:
                    out[:, at + 1] = ~valid
            at += c.width
        return out

    def category_indices(self, table: Any) -> Any:
        """int64 [rows, categorical columns]: vocabulary indices (0: unknown), for embeddings."""
        table = _as_table(table)
        cats = [c for c in self.columns if c.kind in (CATEGORICAL, HASHED)]
        if not cats:
            return np.zeros((table.num_rows, 0), dtype=np.int64)
        return np.stack([_indices(c, table[c.name]) for c in cats], axis=1)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "columns": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    **(
                        {"vocabulary": list(c.vocabulary)}
                        if c.kind == CATEGORICAL
                        else {"buckets": c.buckets, "hash": "crc32"}
                        if c.kind == HASHED
                        else {
                            "mean": c.mean,
                            "std": c.std,
                            "missingIndicator": c.missing_indicator,
                        }
                    ),
                }
                for c in self.columns
            ],
            "outputs": self.output_names(),
        }

    @classmethod
    def from_json(cls, state: dict[str, Any]) -> Preprocessor:
        return cls(
            tuple(
                Column(
                    name=c["name"],
                    kind=c["kind"],
                    mean=float(c.get("mean", 0.0)),
                    std=float(c.get("std", 1.0)),
                    missing_indicator=bool(c.get("missingIndicator", False)),
                    vocabulary=tuple(c.get("vocabulary", ())),
                    buckets=int(c.get("buckets", 0)),
                )
                for c in state["columns"]
            )
        )


def is_numeric(data_type: Any) -> bool:
    return bool(
        pa.types.is_integer(data_type)
        or pa.types.is_floating(data_type)
        or pa.types.is_boolean(data_type)
        or pa.types.is_decimal(data_type)
    )


def _fit_column(name: str, column: Any) -> Column:
    if is_numeric(column.type):
        values, valid = _numbers(column)
        present = values[valid]
        mean = float(present.mean()) if len(present) else 0.0
        std = float(present.std()) if len(present) else 0.0
        # A constant column carries no signal; dividing by 1 keeps it finite.
        return Column(name, NUMERIC, mean, std if std > 1e-12 else 1.0, bool((~valid).any()))
    counts = pc.value_counts(pc.cast(column, pa.string())).to_pylist()
    ranked = sorted(
        ((c["values"], c["counts"]) for c in counts if c["values"] is not None),
        key=lambda vc: (-vc[1], vc[0]),
    )
    return Column(name, CATEGORICAL, vocabulary=tuple(v for v, _ in ranked[:MAX_CATEGORIES]))


def _numbers(column: Any) -> tuple[Any, Any]:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    as_float = pc.cast(column, pa.float64())
    valid = np.asarray(pc.is_valid(as_float).to_numpy(zero_copy_only=False), dtype=bool)
    values = np.asarray(pc.fill_null(as_float, 0.0).to_numpy(zero_copy_only=False))
    finite = np.isfinite(values)
    if finite.all():
        return values, valid
    return np.where(finite, values, 0.0), valid & finite


def _indices(c: Column, column: Any) -> Any:
    text = pc.cast(column, pa.string())
    if c.kind == HASHED:
        return _buckets(text, c.buckets)
    found = pc.index_in(text, value_set=pa.array(list(c.vocabulary), pa.string()))
    return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64) + 1


def bucket(text: str, buckets: int) -> int:
    """The one-hot index of a text under the hashing trick (0 is null): crc32, not
    Python's hash(), which differs between processes.

    >>> bucket("premium", 8)
    6
    """
    return 1 + zlib.crc32(text.encode()) % buckets


def _buckets(text: Any, buckets: int) -> Any:
    # Hash each distinct value once, then spread the codes over the rows.
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    encoded = pc.dictionary_encode(text)
    table = np.array([bucket(v, buckets) for v in encoded.dictionary.to_pylist()] + [0])
    codes = pc.fill_null(encoded.indices, len(encoded.dictionary)).to_numpy(zero_copy_only=False)
    return table[np.asarray(codes, dtype=np.int64)].astype(np.int64)


def _as_table(rows: Any) -> Any:
    if isinstance(rows, pa.Table):
        return rows
    if isinstance(rows, dict):
        return pa.table(rows)
    return pa.Table.from_pylist(list(rows))
