r"""Conditional feature densities :math:`p_D(A \mid B, Z_J \in \text{event})` for the plan sampler.

A factorization term such as :math:`p_D(x_3 \mid x_2, z_2 = 1)` (Prop. 4, Fig. 2(b)) is a
density of some features ``A`` given other features ``B`` on the training rows whose
specifications fall in the target event. The caller selects those rows; the classes here
only see ``(a, b)`` pairs and draw ``a`` for new values of ``b``.

* :class:`NearestNeighbourConditional` -- a nonparametric draw among the training rows whose
  ``b`` is nearest to the query. No fitting, exact on the data, suited to low-dimensional
  ``b``.
* A learned alternative is :class:`~sedge_pyro.models.likelihoods.ConditionalFlow`.

References: the SEDGE paper, Prop. 4 and Thm. 3 (the factorizations these terms come from).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sedge_pyro.errors import DataError
from sedge_pyro.models.prior_tools import _randint, _resize_buffer_on_load
from sedge_pyro.options import whole

__all__ = ["NearestNeighbourConditional"]

#: bound on the number of query-by-training distances held at once
_MAX_DISTANCES = 1 << 22
#: exact differences rather than the matrix-product formula, which loses the nearest
#: neighbour to rounding when distances are small next to the norms
_EXACT = "donot_use_mm_for_euclid_dist"


class NearestNeighbourConditional(nn.Module):
    r"""Draw ``a`` given ``b`` from the ``k`` training rows whose ``b`` is nearest.

    For each query :math:`b^*`, one of the ``k`` training rows with the smallest Euclidean
    distance :math:`\lVert b_i - b^* \rVert` (in normalised units) is picked uniformly and its
    ``a`` returned: a k-nearest-neighbour estimate of :math:`p_D(A \mid B = b^*)`. With no
    ``b`` columns it is the empirical distribution of ``a``.

    Nearest neighbours in Euclidean distance degrade as ``b`` gains dimensions (every row
    becomes about as far as every other), so this suits low-dimensional ``b`` (a few
    features); use a conditional flow beyond that.

    :param k: neighbours to choose among (capped at the number of training rows); larger
        ``k`` smooths more.

    The rows live in persistent buffers ``a`` and ``b``, so ``state_dict()`` saves them and
    ``load_state_dict`` accepts any row count; ``config()`` gives the constructor arguments.

    >>> c = NearestNeighbourConditional(k=1)
    >>> b = torch.arange(5.0).unsqueeze(-1)
    >>> c = c.fit(2 * b, b)
    >>> c.sample(torch.tensor([[3.1]]))
    tensor([[6.]])
    """

    def __init__(self, k: int = 10) -> None:
        super().__init__()
        whole("k", int(k), expected="at least 1")
        self.k = int(k)
        self.a: torch.Tensor
        self.b: torch.Tensor
        self.register_buffer("a", torch.empty(0, 0), persistent=True)
        self.register_buffer("b", torch.empty(0, 0), persistent=True)

    @property
    def a_dim(self) -> int:
        """Number of columns of ``a``."""
        return int(self.a.shape[1])

    @property
    def b_dim(self) -> int:
        """Number of columns of ``b`` (0: unconditional)."""
        return int(self.b.shape[1])

    def fit(self, a: torch.Tensor, b: torch.Tensor) -> NearestNeighbourConditional:
        """Store the training pairs.

        :param a: the drawn features, shape ``(n, da)``.
        :param b: the conditioning features, shape ``(n, db)``; ``db`` may be 0.
        :returns: ``self``.
        :raises DataError: when the shapes disagree or there are no rows.
        """
        if a.dim() != 2 or b.dim() != 2:
            raise DataError(
                f"a has shape {tuple(a.shape)} and b {tuple(b.shape)}: expected matrices "
                "(n, da) and (n, db)"
            )
        if a.shape[0] != b.shape[0]:
            raise DataError(f"a has {a.shape[0]} rows and b {b.shape[0]}: expected equal")
        if a.shape[0] == 0:
            raise DataError("NearestNeighbourConditional.fit: no rows: expected at least one")
        device, dtype = self.a.device, self.a.dtype
        self.a = a.detach().to(device, dtype).clone()
        self.b = b.detach().to(device, dtype).clone()
        return self

    def neighbours(self, b_query: torch.Tensor) -> torch.Tensor:
        """Indices of the ``k`` nearest training rows of each query, shape ``(m, k')``.

        ``k' = min(k, n)``; the query is processed in chunks so that at most about four
        million distances are held at once.
        """
        self._check_query(b_query)
        n, k = self.b.shape[0], min(self.k, self.b.shape[0])
        q = b_query.to(self.b.device, self.b.dtype)
        chunk = max(1, _MAX_DISTANCES // n)
        out = [
            torch.cdist(q[i : i + chunk], self.b, compute_mode=_EXACT)
            .topk(k, dim=1, largest=False)
            .indices
            for i in range(0, q.shape[0], chunk)
        ]
        if not out:
            return torch.empty(0, k, dtype=torch.long, device=self.b.device)
        return torch.cat(out)

    def sample(
        self, b_query: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """One draw of ``a`` per query row.

        :param b_query: shape ``(m, db)`` (``(m, 0)`` when unconditional).
        :param generator: seeds the uniform choice among the neighbours.
        :returns: shape ``(m, da)``, on the module's device.
        :raises DataError: before :meth:`fit`, or when ``b_query`` has the wrong width.
        """
        self._check_query(b_query)
        m, n = b_query.shape[0], self.a.shape[0]
        if self.b_dim == 0:
            return self.a[_randint(n, (m,), self.a.device, generator)]
        nbrs = self.neighbours(b_query)
        pick = _randint(nbrs.shape[1], (m, 1), self.a.device, generator)
        return self.a[nbrs.gather(1, pick).squeeze(1)]

    def _check_query(self, b_query: torch.Tensor) -> None:
        if self.a.shape[0] == 0:
            raise DataError("NearestNeighbourConditional: no rows stored: call fit(a, b) first")
        if b_query.dim() != 2 or b_query.shape[1] != self.b_dim:
            raise DataError(f"b_query has shape {tuple(b_query.shape)}: expected (m, {self.b_dim})")

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        _resize_buffer_on_load(self, state_dict, prefix, ["a", "b"])
        super()._load_from_state_dict(state_dict, prefix, *args)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-ready); the rows travel in ``state_dict()``."""
        return {"k": self.k}
