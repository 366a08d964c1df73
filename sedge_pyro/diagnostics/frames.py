"""Draws, rows or anything with ``to_dataframe()`` as a DataFrame, for every diagnostic."""

from __future__ import annotations

from typing import Any

import pandas as pd

from sedge_pyro.errors import DataError


def _frame(data: Any, name: str) -> pd.DataFrame:
    """A DataFrame of draws: a DataFrame as is, or ``data.to_dataframe()`` (e.g. ``Samples``)."""
    if isinstance(data, pd.DataFrame):
        return data
    to_dataframe = getattr(data, "to_dataframe", None)
    if callable(to_dataframe):
        frame = to_dataframe()
        if isinstance(frame, pd.DataFrame):
            return frame
    raise DataError(
        f"{name} is {type(data).__name__}: expected a DataFrame or an object with "
        "to_dataframe() (e.g. sp.Samples)"
    )
