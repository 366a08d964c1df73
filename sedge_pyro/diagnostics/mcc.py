"""The mean correlation coefficient (MCC) between estimated and true latents, matched one to one
(the identifiability score of the latent setting, Sec. 4.1, App. B.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sedge_pyro.diagnostics.frames import _frame
from sedge_pyro.errors import DataError, OptionError


@dataclass(frozen=True)
class MCCResult:
    r"""The mean correlation coefficient of :func:`mcc` and its optimal matching.

    :ivar mean: the mean over the true variables of the matched :math:`|\rho|`.
    :ivar per_variable: true name -> :math:`|\rho|` with its matched estimate.
    :ivar matching: true name -> the name of its matched estimated variable (for an array,
        the column index as a string, ``"0"``, ``"1"``, ...).
    :ivar matrix: the :math:`|\rho|` matrix, estimated names (rows) x true names (columns).
    :ivar method: ``"pearson"`` or ``"spearman"``.
    """

    mean: float
    per_variable: Mapping[str, float]
    matching: Mapping[str, str]
    matrix: pd.DataFrame
    method: str

    @property
    def positions(self) -> dict[str, int]:
        """True name -> column position of its matched estimate in ``estimated``."""
        rows = list(self.matrix.index)
        return {t: rows.index(e) for t, e in self.matching.items()}


def _named_matrix(data: Any, name: str) -> tuple[np.ndarray, list[str]]:
    if not isinstance(data, pd.DataFrame) and callable(getattr(data, "to_dataframe", None)):
        data = _frame(data, name)
    if isinstance(data, pd.DataFrame):
        names = [str(c) for c in data.columns]
        if len(set(names)) != len(names):
            raise DataError(f"{name} has duplicate column names {names}: expected unique names")
        try:
            arr = data.to_numpy(dtype=float)
        except (TypeError, ValueError):
            raise DataError(f"{name} holds non-numeric columns: expected numbers") from None
    else:
        try:
            arr = np.asarray(data, dtype=float)
        except (TypeError, ValueError):
            raise DataError(f"{name} is not numeric: expected rows x variables") from None
        if arr.ndim == 1:
            arr = arr[:, None]
        names = [str(j) for j in range(arr.shape[1])] if arr.ndim == 2 else []
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise DataError(f"{name} has shape {arr.shape}: expected rows x variables (at least one)")
    bad = ~np.isfinite(arr)
    if bad.any():
        col = names[int(np.argmax(bad.any(axis=0)))]
        raise DataError(f"{name} column {col!r} holds {int(bad.sum())} NaN or infinite values")
    return arr, names


def _standardized(arr: np.ndarray, names: list[str], name: str) -> np.ndarray:
    centred = arr - arr.mean(axis=0)
    std = np.sqrt(np.mean(centred**2, axis=0))
    scale = np.maximum(np.abs(arr).max(axis=0), 1.0)
    # a column whose spread is at rounding level is constant: its correlation is undefined
    flat = std <= 1e-12 * scale
    if flat.any():
        raise DataError(
            f"{name} column {names[int(np.argmax(flat))]!r} is constant: its correlation is "
            "undefined"
        )
    return centred / std


def mcc(estimated: Any, truth: Any, *, method: str = "pearson") -> MCCResult:
    r"""Mean correlation coefficient between estimated and true variables (paper Table 1).

    The absolute correlation :math:`|\rho_{ij}|` of every estimated variable :math:`i` with
    every true variable :math:`j`; each true variable is matched to a distinct estimate by
    the assignment maximising :math:`\sum_j |\rho_{\pi(j) j}|` (the Hungarian algorithm,
    :func:`scipy.optimize.linear_sum_assignment`), and the MCC is the mean of the matched
    :math:`|\rho|`. It is invariant to permutation, sign and scale of the estimates, the
    indeterminacies of component-wise identifiability; ``method="spearman"`` (correlation
    of ranks) also to strictly monotone transforms.

    :param estimated: rows x estimated variables: an array (names ``"0"``, ``"1"``, ...), a
        DataFrame (names from its columns), or an object with ``to_dataframe()``. It may
        hold more variables than ``truth``; the unmatched ones are ignored.
    :param truth: rows x true variables, same rows in the same order.
    :param method: ``"pearson"`` or ``"spearman"``.
    :returns: an :class:`MCCResult` (``mean``, ``per_variable``, ``matching``, ``matrix``).
    :raises DataError: for different row counts, fewer than two rows, NaN or infinite
        values, a constant column, or fewer estimated than true variables.
    :raises OptionError: for an unknown ``method``.

    References: Hyvärinen and Morioka, Unsupervised Feature Extraction by Time-Contrastive
    Learning and Nonlinear ICA, NeurIPS 2016; Xie et al. 2025 (App. B.1 of the paper).

    >>> t = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0], [3.0, 0.0]])
    >>> r = mcc(-2.0 * t[:, ::-1], pd.DataFrame(t, columns=["x1", "x2"]))
    >>> round(r.mean, 6), r.matching
    (1.0, {'x1': '1', 'x2': '0'})
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.stats import rankdata

    if method not in ("pearson", "spearman"):
        raise OptionError(f"method={method!r}: expected 'pearson' or 'spearman'")
    est, est_names = _named_matrix(estimated, "estimated")
    tru, tru_names = _named_matrix(truth, "truth")
    if len(est) != len(tru):
        raise DataError(
            f"estimated has {len(est)} rows and truth {len(tru)}: expected the same rows"
        )
    if len(est) < 2:
        raise DataError(f"estimated and truth have {len(est)} rows: expected two or more")
    if est.shape[1] < tru.shape[1]:
        raise DataError(
            f"estimated has {est.shape[1]} variables and truth {tru.shape[1]}: expected at "
            "least one estimate per true variable"
        )
    if method == "spearman":
        est, tru = rankdata(est, axis=0), rankdata(tru, axis=0)
    za = _standardized(est, est_names, "estimated")
    zb = _standardized(tru, tru_names, "truth")
    corr = np.clip(np.abs(za.T @ zb) / len(za), 0.0, 1.0)
    rows, cols = linear_sum_assignment(corr, maximize=True)
    per_variable = {tru_names[j]: float(corr[i, j]) for i, j in zip(rows, cols, strict=True)}
    matching = {tru_names[j]: est_names[i] for i, j in zip(rows, cols, strict=True)}
    order = {t: k for k, t in enumerate(tru_names)}
    per_variable = dict(sorted(per_variable.items(), key=lambda kv: order[kv[0]]))
    matching = dict(sorted(matching.items(), key=lambda kv: order[kv[0]]))
    return MCCResult(
        mean=float(np.mean(list(per_variable.values()))),
        per_variable=per_variable,
        matching=matching,
        matrix=pd.DataFrame(corr, index=est_names, columns=tru_names),
        method=method,
    )
