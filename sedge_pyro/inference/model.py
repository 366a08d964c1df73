"""``SEDGEModel``: the user-facing model, the Pyro program of Sec. 3.1 with fitting and sampling.

:class:`~sedge_pyro.models.sedge.SEDGEProgram` (in :mod:`sedge_pyro.models`) is the program
built from a :class:`~sedge_pyro.SpecGraph`: components, sample sites, densities and the model
file. This class adds what needs the inference layer: :meth:`SEDGEModel.fit` (every component
by SVI on its own Pyro program with :func:`~sedge_pyro.inference.fit.fit_component`, Eq. 4),
:meth:`SEDGEModel.spec_probability` and :meth:`SEDGEModel.sample`
(:func:`~sedge_pyro.inference.sample.sample`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from sedge_pyro.errors import DataError, SedgeError
from sedge_pyro.inference.backtest import Backtest, run_backtest, sample_auto
from sedge_pyro.inference.distributed import World, all_sum, world
from sedge_pyro.inference.fit import Stream, fit_component, split
from sedge_pyro.inference.sample import sample as run_sampler
from sedge_pyro.inference.sample import shares_parameters
from sedge_pyro.inference.target import Target
from sedge_pyro.models import likelihoods as L
from sedge_pyro.models import priors as P
from sedge_pyro.models.base import Prior
from sedge_pyro.models.columns import Columns, as_frame, check_columns
from sedge_pyro.models.sedge import (
    AUTO_MARGIN,
    COMPONENT_KINDS,
    SEDGEProgram,
    component_key,
    component_program,
)
from sedge_pyro.models.stream import Scan, StreamedRows, keep_note, kept_rows, scan
from sedge_pyro.options import device as check_device
from sedge_pyro.options import number, whole
from sedge_pyro.options import seed as check_seed
from sedge_pyro.options import threads as torch_threads
from sedge_pyro.table import Table, is_table


def _as_table(data: Any) -> Table | None:
    """``data`` as a :class:`~sedge_pyro.Table` when it names files (a path, a
    ``pyarrow.dataset``, a Table); ``None`` for a DataFrame or dict of arrays.
    """
    if is_table(data):
        return Table(data)
    if not isinstance(data, (pd.DataFrame, Mapping)):
        raise DataError(
            f"data is {type(data).__name__}: expected a pandas DataFrame, a dict of arrays, or "
            "a path to a Parquet or CSV file or folder (a pyarrow dataset, an sp.Table)"
        )
    return None


__all__ = ["SEDGEModel", "backtest"]


class SEDGEModel(SEDGEProgram):
    """The SEDGE generative model of a graph, fit on training rows (S = 1).

    :param graph: the feature -> specification graph.
    :param likelihood: ``"auto"`` (the default: Bernoulli for 0/1, categorical for labels;
        for a continuous spec the Gaussian MLP of Eq. (4) and the conditional spline flow of
        App. D.2 are both fit, and the flow is kept only where its held-out NLL is lower by
        more than :data:`AUTO_MARGIN`: uniform, skewed or bounded noise), ``"gaussian"``,
        ``"bernoulli"``, ``"monotone"`` (a Bernoulli whose ``P(z = 1 | parents)`` is monotone
        in each parent, the direction learned: for threshold specs, where an unconstrained
        MLP may turn back outside the rows), ``"categorical"``, ``"flow"``, or a dict spec ->
        one of these.
    :param prior: ``"auto"`` (the default: a flow and a full-covariance Gaussian, the flow
        kept only where its held-out NLL is lower by more than :data:`AUTO_MARGIN`),
        ``"flow"`` (normalizing flow by maximum likelihood), ``"empirical"``
        (training rows), ``"diffusion"`` (DDPM, for DPS and annealed Langevin),
        ``"factorized"`` (``prod_j p(x_j | pa(x_j))`` along the feature -> feature edges, each a
        Gaussian MLP), ``"gaussian"`` (one full-covariance Gaussian, fit in closed form), or
        ``"dual"`` (the dual-divergence prior of seed 003: a density ratio to the product of
        marginals, sampled by gradient walks; for few rows); a
        dict feature -> ``"gaussian"``/``"flow"`` is a factorized prior with per-feature
        choices.
    :param structure: one of :data:`STRUCTURES` (the paper's models A-E).
    :param hidden: hidden layer sizes of the MLPs.
    :param prior_options: extra keyword arguments of the prior's class (e.g.
        ``{"kind": "spline_coupling"}`` for a flow, also the flow of ``"auto"``;
        ``{"T": 200}`` for diffusion).

    What ``"auto"`` chose is :attr:`chosen`; the candidates' held-out NLLs are in
    ``history[name]["auto"]``.
    :raises SedgeError: for an unknown option, naming it and the choices.

    >>> import sedge_pyro as sp
    >>> seen, oracle, graph = sp.datasets.paper_synthetic(2000, seed=0)
    >>> model = sp.SEDGEModel(graph, prior="empirical")
    >>> model = model.fit(seen, steps=50, progress=False)
    >>> sorted(model.history)
    ['prior', 'z1', 'z2']
    """

    def fit(
        self,
        data: Any,
        *,
        steps: int | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        lr: float = 1e-3,
        device: str | torch.device = "cpu",
        seed: int = 0,
        val_fraction: float = 0.1,
        patience: int = 10,
        components: Sequence[str] | None = None,
        prior_data: Any = None,
        progress: bool = True,
        threads: int | None = None,
    ) -> SEDGEModel:
        """Fit every component on training rows by SVI (maximum likelihood, Eq. 4).

        :param data: training rows (S = 1) with a column per feature and specification: a
            DataFrame or dict of arrays, or files read a record batch at a time so that memory
            does not grow with the rows: a path to a Parquet or CSV file or a folder of them,
            a ``pyarrow.dataset.Dataset`` or a :class:`~sedge_pyro.Table`. A file is read once
            to check every cell (an error names the file and row) and compute the columns'
            statistics, then streamed through a shuffle buffer for each component; its
            held-out rows are those of :func:`~sedge_pyro.table.row_hash` below
            ``val_fraction`` (at most :data:`~sedge_pyro.models.stream.VAL_ROWS` scored), and
            up to :data:`~sedge_pyro.models.stream.KEEP_ROWS` training rows, a uniform sample,
            are kept as :attr:`seen` for the samplers and the model file
            (:attr:`data_rows` says how many of how many). A DataFrame of more than
            :data:`~sedge_pyro.models.stream.KEEP_ROWS` rows is fit on all of them and keeps
            such a sample too.
        :param steps: SVI steps per component. The default grows with the rows: 100 passes
            over the training split, at least 2,000 and at most 10,000 steps (see
            :func:`~sedge_pyro.inference.fit.schedule`), always with held-out early stopping.
        :param epochs: passes over the data per component (overrides ``steps``).
        :param batch_size: rows per step (default 256); a value above the rows of the
            training split is capped at them, so small tables fit full-batch.
        :param lr: Adam's learning rate.
        :param device: ``"cpu"``, ``"cuda"`` or a ``torch.device``. Under ``torchrun`` each
            process fits on its share of the rows and the gradients are averaged
            (:mod:`~sedge_pyro.inference.distributed`); ``"cuda"`` then means the process's
            ``LOCAL_RANK`` GPU.
        :param seed: seeds the split, minibatches and initialisation.
        :param val_fraction: held-out share for early stopping on the held-out NLL.
        :param patience: evaluations (every 50 steps) without improvement before stopping.
        :param components: refit only these (names as in :attr:`history`) of a fitted model.
        :param prior_data: feature rows drawn *without* the selection (a column per feature;
            spec columns, if any, are ignored), to fit the prior on the population
            :math:`p(X)` instead of the training rows' :math:`p_D(X)`. The selection acts on
            the specs, so the training rows' features are tilted towards seen combinations,
            and a novel combination's features may lie outside their support; unlabelled
            rows (e.g. the concepts of a broad image set, the prior of App. D.2) do not have
            that gap. Only the prior uses them: the likelihoods, and ``plan``'s
            :math:`p_D` terms, still come from ``data``.
        :param progress: show progress bars.
        :param threads: torch's CPU threads while fitting, restored afterwards (``None``:
            :func:`~sedge_pyro.options.default_threads`).
        :returns: the model itself.
        :raises DataError: naming the column or count for missing columns, NaN/inf, constant
            columns, or non-binary values of a Bernoulli spec.
        :raises OptionError: for a non-positive ``steps``, ``epochs``, ``batch_size``,
            ``patience``, ``threads`` or ``lr``, or a negative ``seed``.
        """
        steps = whole("steps", steps, none_ok=True)
        epochs = whole("epochs", epochs, none_ok=True)
        batch_size = whole("batch_size", batch_size, none_ok=True)
        patience = whole("patience", patience)
        seed = check_seed(seed)
        lr = number("lr", lr)
        if not 0.0 <= val_fraction < 1.0:
            raise DataError(f"val_fraction={val_fraction!r}: expected a number in [0, 1)")
        table = _as_table(data)
        df = None if table is not None else self._frame(data)
        # per-target pieces fit on the old components (inference/selection.py) are stale
        self.__dict__.pop("_selection_aware_cache", None)
        with torch_threads(threads):
            device = check_device(device)
            where = world(device)
            if where.distributed and device.type == "cuda" and device.index is None:
                device = torch.device("cuda", where.local_rank)
            progress = progress and where.main
            fresh = components is None or not self.fitted
            if table is not None:
                found = self._scan(table, seed, val_fraction, progress, fresh=fresh)
            elif fresh:
                self._start_fit(df, seed)
                self.data_rows = {"rows": len(df), "kept_rows": len(self.seen)}
            self.to(device)
            if table is not None:
                kept = self.tensors(found.kept, device=device)
                held = self.tensors(found.held_out, device=device)
                rows = StreamedRows(
                    table,
                    self.columns,  # type: ignore[arg-type]
                    list(self.features) + list(self.specs),
                    seed=seed,
                    val_fraction=val_fraction,
                    rank=where.rank,
                    world=where.size,
                    rows=found.train_rows,
                )
                t = kept
            else:
                t = self.tensors(df, device=device)
            if prior_data is not None:
                t = dict(t, X_prior=self._prior_rows(prior_data, device))
            parts = self._fit_parts(components)
            fit_kw = dict(steps=steps, epochs=epochs, batch_size=batch_size, lr=lr)
            fit_kw.update(val_fraction=val_fraction, patience=patience, progress=progress)
            outer = tqdm(parts.items(), desc="SEDGE fit", disable=not progress, leave=False)
            for i, (name, (module, fn, pick)) in enumerate(outer):
                outer.set_postfix(component=name)
                kw = {"name": name, **fit_kw, "seed": seed + i}
                tensors = pick(t)
                data_of = tensors
                if table is not None and not (name == "prior" and "X_prior" in t):
                    data_of = self._stream(rows, pick, held, where, device)
                self._fit_job(
                    name,
                    module,
                    fn,
                    tensors,
                    kw,
                    population="X_prior" in t,
                    data=data_of,
                    held_x=held["X"] if table is not None else None,
                )
        return self

    def _scan(
        self, table: Table, seed: int, val_fraction: float, progress: bool, *, fresh: bool
    ) -> Scan:
        """One pass over ``table`` (:func:`~sedge_pyro.models.stream.scan`); for a fresh fit
        its columns, its kept rows as :attr:`seen` (what the samplers read), new components.
        """
        found = scan(
            table,
            self.features,
            self.specs,
            self._kinds(),
            selection=self.graph.selection,
            val_fraction=val_fraction,
            seed=seed,
            progress=progress,
        )
        if fresh:
            self.columns = found.columns
            self.seen = found.kept.copy()
            torch.manual_seed(seed)
            self._build()
            self.history = {}
        self.data_rows = keep_note(found)
        return found

    def _stream(
        self,
        rows: StreamedRows,
        pick: Any,
        held: dict[str, torch.Tensor],
        where: World,
        device: torch.device,
    ) -> Stream:
        """One component's :class:`~sedge_pyro.inference.fit.Stream` of ``rows``: its program's
        tensors of each minibatch, and this process's share of the held-out rows.
        """

        def batches(batch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
            pin = device.type == "cuda"  # page-locked rows copy to the GPU asynchronously
            for codes in rows.batches(batch, generator):
                host = torch.from_numpy(codes)
                host = host.pin_memory() if pin else host
                yield pick(self.code_tensors(host.to(device, non_blocking=pin)))

        share = tuple(v[where.rank :: where.size] for v in pick(held))
        return Stream(self.data_rows["train_rows"], share, batches)

    def save(self, path: Any, *, overwrite: bool = False) -> Path:
        """Save the fitted model (see :meth:`SEDGEProgram.save
        <sedge_pyro.models.sedge.SEDGEProgram.save>`). Under ``torchrun`` only rank 0 writes,
        and every process returns once the file is there.
        """
        where = world()
        out, failed = Path(path), None
        if where.main:
            try:
                out = super().save(path, overwrite=overwrite)
            except (SedgeError, OSError) as err:
                failed = err
        # every process learns whether rank 0 wrote the file (and none waits for ever)
        if all_sum([float(failed is not None)], where)[0]:
            if failed is not None:
                raise failed
            raise SedgeError(
                f"{str(path)!r}: rank 0 could not write the model file (see its error)"
            )
        return out

    def _start_fit(self, df: pd.DataFrame, seed: int) -> None:
        """A fresh fit: the columns' normalisation, the training rows, new components
        (initialised from ``seed``) and an empty history.
        """
        self.columns = Columns.fit(df, self.features, self.specs, self._kinds())
        cols = list(self.features) + list(self.specs)
        self.seen = kept_rows(df[cols], seed).copy()
        torch.manual_seed(seed)
        self._build()
        self.history = {}

    def _kinds(self) -> dict[str, str]:
        """Each spec's column kind as its likelihood implies (``"auto"``: from the data)."""
        return {
            z: {
                "gaussian": "continuous",
                "flow": "continuous",
                "bernoulli": "binary",
                "monotone": "binary",
                "categorical": "categorical",
            }.get(self.likelihood_choice[z], "auto")
            for z in self.specs
        }

    def _fit_parts(self, components: Sequence[str] | None) -> dict[str, Any]:
        """The components to fit, each ``(module, program, pick)``: all, or ``components``.

        :raises SedgeError: naming a component the model does not have.
        """
        jobs = self._job_parts()
        if components is not None:
            unknown = [c for c in components if c not in jobs]
            if unknown:
                raise SedgeError(f"component {unknown[0]!r}: expected one of {', '.join(jobs)}")
            jobs = {k: v for k, v in jobs.items() if k in components}
        return jobs

    def _fit_job(
        self,
        name: str,
        module: nn.Module,
        fn: Any,
        tensors: tuple[torch.Tensor, ...],
        fit_kw: dict[str, Any],
        *,
        population: bool,
        data: Any = None,
        held_x: torch.Tensor | None = None,
    ) -> None:
        """Fit one component with :func:`~sedge_pyro.inference.fit.fit_component` (and its
        ``"auto"`` rival, keeping the better) and record its history under ``name``.

        :param tensors: its rows in memory (all, or those kept from a file), for a prior's
            setup and a closed-form rival.
        :param data: what it is fit on: ``tensors`` (the default) or a
            :class:`~sedge_pyro.inference.fit.Stream` of a file's rows.
        :param held_x: a file's held-out features, all of them (a closed-form rival prior is
            scored on them).
        """
        data = tensors if data is None else data
        if isinstance(module, Prior):
            module.setup(tensors[0])
            if not module.trainable:
                self.history[name] = {"name": name, "steps": 0, "seconds": 0.0}
                return
        record = fit_component(module, fn, data, **fit_kw).to_dict()
        rival = self._rival(name, module, fit_kw["seed"])
        if rival is not None:
            record = self._choose(name, module, record, rival, tensors, fit_kw, data, held_x)
        if name == "prior":
            # p(X) of the population, or the training rows' p_D(X): the samplers of
            # a diffusion prior treat the two differently (inference/selection.py)
            record["population"] = population
        self.history[name] = record

    def _rival(self, name: str, module: nn.Module, seed: int) -> nn.Module | None:
        """The other candidate of an ``"auto"`` component (a Gaussian for a flow, a flow for
        a Gaussian), or ``None`` where there is no choice to make.
        """
        if name == "prior":
            if self.prior_choice != "auto":
                return None
            if isinstance(module, P.FlowPrior):
                return P.GaussianPrior(len(self.features))
            torch.manual_seed(seed)  # its initialisation, reproducibly
            return self._make_prior()
        if name not in self.specs or self.likelihood_choice[name] != "auto":
            return None
        assert self.columns is not None
        if self.structure not in ("sparse", "dense") or self.columns[name].kind != "continuous":
            return None
        width = len(self.context_of(name))
        torch.manual_seed(seed)
        if isinstance(module, L.GaussianMLP):
            return L.ConditionalFlow(1, width, hidden=self.hidden)
        return L.GaussianMLP(width, hidden=self.hidden)

    def _choose(
        self,
        name: str,
        module: nn.Module,
        record: dict[str, Any],
        rival: nn.Module,
        tensors: tuple[torch.Tensor, ...],
        fit_kw: dict[str, Any],
        data: Any,
        held_x: torch.Tensor | None,
    ) -> dict[str, Any]:
        """Fit ``rival`` on the same rows and held-out split as ``module`` and keep whichever
        :data:`AUTO_MARGIN` favours (the Gaussian unless the flow's held-out NLL is lower by
        more than it; the Gaussian where nothing is held out). Returns the kept one's history
        with ``"auto"``: the candidates' held-out NLLs and the choice.
        """
        rival.to(tensors[0].device)
        start = time.perf_counter()
        if isinstance(rival, Prior) and not rival.trainable:  # the closed-form Gaussian
            x = tensors[0]
            if isinstance(data, Stream):  # the kept rows of a file, scored on its held-out rows
                assert held_x is not None
                x_train, x_val = x, held_x
            else:
                val, train = (
                    i.to(x.device)
                    for i in split(int(x.shape[0]), fit_kw["val_fraction"], fit_kw["seed"])
                )
                x_train, x_val = (x[train] if len(train) >= 2 else x), x[val]
            rival.setup(x_train)
            with torch.no_grad():
                loss = float(-rival.log_prob(x_val).mean()) if len(x_val) else math.nan
            rival.setup(x)
            other = {"name": name, "steps": 0, "best_val": loss}
        else:
            if isinstance(rival, Prior):
                rival.setup(tensors[0])
            fn = component_program(rival.model, "X" if name == "prior" else name)
            other = fit_component(rival, fn, data, **fit_kw).to_dict()
        other["seconds"] = time.perf_counter() - start
        kind = {id(m): COMPONENT_KINDS[type(m).__name__] for m in (module, rival)}
        losses = {kind[id(module)]: record.get("best_val"), kind[id(rival)]: other["best_val"]}
        flow, gauss = losses["flow"], losses["gaussian"]
        pick = (
            "flow"
            if all(v is not None and math.isfinite(v) for v in (flow, gauss))
            and flow < gauss - AUTO_MARGIN
            else "gaussian"
        )
        kept, out = (module, record) if kind[id(module)] == pick else (rival, other)
        if kept is rival:
            self.components[component_key(name)] = rival
        out = dict(out)
        out["auto"] = {"held_out_nll": losses, "chosen": pick, "margin": AUTO_MARGIN}
        return out

    @torch.no_grad()
    def spec_probability(
        self,
        data: Any,
        target: Mapping[str, Any],
        *,
        tolerance: float | Mapping[str, float] | None = None,
    ) -> pd.DataFrame:
        """Per row of features, the fitted probability that each target spec is met.

        ``P(z_i in A_i | V_i(x))`` from the fitted likelihoods (models A/B); a point target on
        a continuous spec counts as met within the tolerance of :func:`~sedge_pyro.identify`
        (0.1 training standard deviations by default). Column ``"all"`` is their product
        (the specs are independent given ``X``, Sec. 3.1).

        :param data: rows with a column per feature (raw units).
        :param target: specification -> value or :class:`~sedge_pyro.Interval`.
        :returns: a DataFrame with a column per target spec and ``"all"``.
        """
        self._require_fitted()
        assert self.columns is not None
        df = as_frame(data)
        check_columns(df, list(self.features))
        x = self.columns.tensor(df, self.features, device=self.device)
        probs = Target(self, target, tolerance=tolerance).event_probabilities(x)
        out = pd.DataFrame({k: v.cpu().numpy() for k, v in probs.items()}, index=df.index)
        out["all"] = out.prod(axis=1)
        return out

    # ------------------------------------------------------------------ sampling

    @shares_parameters
    def sample(
        self,
        target: Mapping[str, Any],
        n: int = 1000,
        method: str | None = None,
        *,
        chains: int = 1,
        seed: int = 0,
        device: str | torch.device | None = None,
        tolerance: float | Mapping[str, float] | None = None,
        progress: bool = False,
        threads: int | None = None,
        **options: Any,
    ) -> Any:
        """Draw features ``X`` for a target ``Z_T = z`` the training rows may never show.

        {parameters}
        :param threads: torch's CPU threads while sampling, restored afterwards (``None``:
            :func:`~sedge_pyro.options.default_threads`); an :class:`~sedge_pyro.OptionError`
            for a ``threads`` that is not a whole number >= 1.
        {returns}

        >>> import sedge_pyro as sp
        >>> seen, oracle, graph = sp.datasets.paper_synthetic(1000, seed=0)
        >>> model = sp.SEDGEModel(graph, prior="empirical").fit(seen, steps=20, progress=False)
        >>> s = model.sample({"z1": 1.0}, n=50, method="plan")
        >>> s.to_dataframe().shape
        (50, 3)
        """
        kw = {"chains": chains, "seed": seed, "device": device, "tolerance": tolerance}
        with torch_threads(threads):
            if method == "auto":  # a backtest on the training rows chooses (inference.backtest)
                return sample_auto(self, target, n, progress=progress, **kw, **options)
            return run_sampler(self, target, n, method, progress=progress, **kw, **options)


def backtest(graph: Any, data: Any, target: Mapping[str, Any], **options: Any) -> Backtest:
    """``sp.backtest``: :func:`sedge_pyro.inference.backtest.run_backtest` (its keyword arguments
    are ``options``; see it for them and for the procedure), each cell fitting a
    :class:`SEDGEModel` unless ``build=`` names another class.

    >>> import sedge_pyro as sp
    >>> seen, oracle, graph = sp.datasets.paper_synthetic(2000, seed=0)
    >>> bt = sp.backtest(graph, seen, {"z1": sp.Interval(high=0.8), "z2": sp.Interval(low=1.0)},
    ...                  methods=["plan"], steps=20, draws=200, progress=False)
    >>> [c.label for c in bt.cells]
    ['z1 ≥ 0.8, z2 ≤ 1']
    """
    options.setdefault("build", SEDGEModel)
    return run_backtest(graph, data, target, **options)
