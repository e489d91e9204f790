"""Polars mirrors of the dbt mart logic, for tests and benchmarks that build mart frames without dbt."""

from __future__ import annotations

import polars as pl


def glucose_category(glucose: pl.Expr) -> pl.Expr:
    """models/marts/fct_glucose_readings.sql's `glucose_category`."""
    return (
        pl.when(glucose.is_null())
        .then(None)
        .when(glucose < 54)
        .then(pl.lit("very_low"))
        .when(glucose < 70)
        .then(pl.lit("low"))
        .when(glucose <= 180)
        .then(pl.lit("in_range"))
        .when(glucose <= 250)
        .then(pl.lit("high"))
        .otherwise(pl.lit("very_high"))
    )
