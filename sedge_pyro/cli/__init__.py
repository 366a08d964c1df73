"""The ``sedge`` command line: ``sedge identify``, ``fit``, ``sample``, ``backtest``, ``convert``,
``examples``, ``demo``, ``images``.

Bad input ends in one line on standard error, ``sedge: error: ...``, and exit code 2.
``sedge identify`` exits 1 when an assumption check fails on the training rows (the report is
still printed in full), 0 when none fails; with ``--strict`` a failed check is bad input (2).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sedge_pyro.cli import arguments
from sedge_pyro.cli.values import _choice, _hidden, parse_options, parse_target
from sedge_pyro.errors import DataError, OptionError, SedgeError, TargetError
from sedge_pyro.expr import Var
from sedge_pyro.options import SEED_LIMIT, threads, whole
from sedge_pyro.version import __version__

__all__ = ["main", "parse_options", "parse_target"]

#: the most draws (``-n`` times ``--chains``) one ``sedge sample`` call makes
MAX_DRAWS = 10**8
#: the most rows ``--rows`` simulates (an example's rows are a few floats each)
MAX_ROWS = 10**7


def _read_csv(path: str) -> Any:
    import pandas as pd

    p = Path(path)
    if p.is_dir():
        raise DataError(f"data file {path!r} is a folder: expected a CSV file")
    if not p.is_file():
        raise DataError(f"data file {path!r} does not exist")
    try:
        return pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"data file {path!r} is not a readable CSV: {err}") from None


def _cmd_identify(args: argparse.Namespace) -> int:
    from sedge_pyro.examples import EXAMPLES
    from sedge_pyro.graph import SpecGraph
    from sedge_pyro.identify import identify

    seen = _read_rows(args.data) if args.data else None
    note = ""
    if Path(args.graph).suffix.lower() in (".json", ".gml") or Path(args.graph).exists():
        graph = SpecGraph.read(args.graph)
        if not args.target:
            raise TargetError("--target is required with a graph file, e.g. --target z1=1 z2=1")
        target = parse_target(args.target)
    elif args.graph in EXAMPLES:
        example = EXAMPLES[args.graph]
        graph = example.graph
        target = parse_target(args.target) if args.target else dict(example.target)
        if seen is None and not args.no_data:
            seen = example.seen(n=args.rows, seed=args.seed)
            note = (
                f"# example {args.graph!r} ({example.reference}); {len(seen)} simulated "
                "training rows (pass --data FILE or --no-data to change)\n"
            )
    else:
        raise SedgeError(
            f"graph {args.graph!r} is neither a .json/.gml file nor a registry example "
            "(see `sedge examples`)"
        )
    res = identify(graph, target, seen, tolerance=args.tolerance, strict=args.strict)
    # a failed check flags the result: exit 1 after the full report
    code = 1 if res.ok is False else 0
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, ensure_ascii=False))
        return code
    print(note + res.explain())
    if args.latex and res.factorization is not None:
        query = res.query.to_latex() if res.query is not None else "p(X)"
        sign = r"\propto" if res.factorization.proportional else "="
        print(f"latex: {query} {sign} {res.factorization.to_latex()}")
    return code


def _read_graph(text: str) -> Any:
    from sedge_pyro.examples import EXAMPLES
    from sedge_pyro.graph import SpecGraph

    if Path(text).suffix.lower() in (".json", ".gml") or Path(text).exists():
        return SpecGraph.read(text)
    if text in EXAMPLES:
        return EXAMPLES[text].graph
    raise SedgeError(
        f"graph {text!r} is neither a .json/.gml file nor a registry example (see `sedge examples`)"
    )


def _refuse_overwrite(path: str, overwrite: bool) -> None:
    if Path(path).exists() and not overwrite:
        raise SedgeError(f"{path!r} exists; pass --overwrite to replace it")


def _check_writable(path: str, flag: str) -> None:
    """Refuse an output path that cannot be written, before the work (creates nothing)."""
    p = Path(path)
    if p.is_dir():
        raise OptionError(f"{flag} {path!r} is a folder: expected a file name")
    folder = p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise OptionError(f"{flag} {path!r}: {str(folder)!r} is a file, so no folder can be made")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OptionError(f"{flag} {path!r}: the folder {str(folder)!r} is not writable")


def _check_seed(seed: Any) -> None:
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise OptionError(f"--seed {seed}: expected a whole number from 0 to 2**63 - 1")


#: the most processes ``--nproc`` starts on one machine
MAX_NPROC = 256


def _launch(args: argparse.Namespace) -> int | None:
    """Start this command again in ``--nproc`` processes through ``torch.distributed.run``
    (the engine of ``torchrun``) and return the exit code, or ``None`` to run it here (one
    process, or already one of a job's processes).

    :raises OptionError: for ``--nproc`` outside 1..:data:`MAX_NPROC`, or ``--nproc`` above 1
        inside a job that a launcher already started.
    """
    n = args.nproc
    if isinstance(n, bool) or not 1 <= n <= MAX_NPROC:
        raise OptionError(f"--nproc {n}: expected a whole number from 1 to {MAX_NPROC}")
    if n == 1:
        return None
    if os.environ.get("WORLD_SIZE") or os.environ.get("SLURM_NTASKS", "1") != "1":
        raise OptionError(
            f"--nproc {n} inside a job of several processes: the launcher (torchrun, srun) "
            "already started them; leave --nproc out"
        )
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    argv = list(args.argv)
    at = next(i for i, a in enumerate(argv) if a == "--nproc" or a.startswith("--nproc="))
    del argv[at : at + (1 if "=" in argv[at] else 2)]
    # one thread per process unless the user says otherwise (torchrun's own default, stated
    # here so that it does not print a notice about it)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # the processes print their own one-line errors; the launcher's log would add tracebacks
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    launch = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={n}", "--module", "sedge_pyro.cli", *argv]
    )
    try:
        run(launch)
    except ChildFailedError as err:
        # a process that failed first makes the launcher stop the others (a negative code)
        codes = sorted({f.exitcode for f in err.failures.values() if f.exitcode > 0})
        print(
            f"sedge: error: the job of {n} processes failed (exit code "
            f"{', '.join(map(str, codes)) or 'a signal'}); the messages are above",
            file=sys.stderr,
        )
        return 2 if codes == [2] else 1
    return 0


def _main_process() -> bool:
    """Whether this is the process that prints and writes (rank 0, or the only one)."""
    return int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")) or 0) == 0


def _processes() -> str:
    """``" in 2 processes"`` under a launcher, else nothing."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    return f" in {size} processes" if size > 1 else ""


def _read_rows(path: str) -> Any:
    """A CSV file as a DataFrame; a Parquet file or a folder as a :class:`~sedge_pyro.Table`
    streamed by the fit.
    """
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".csv":
        return _read_csv(path)
    if not p.exists():
        raise DataError(f"data file {path!r} does not exist")
    from sedge_pyro.table import Table

    return Table(p)


def _cmd_fit(args: argparse.Namespace) -> int:
    import time

    for flag in ("steps", "epochs", "batch_size"):
        name = f"--{flag.replace('_', '-')}"
        whole(name, getattr(args, flag), none_ok=True, expected="a positive number", sep=" ")
    if not args.lr > 0:
        raise OptionError(f"--lr {args.lr}: expected a positive learning rate")
    graph = _read_graph(args.graph)
    data = _read_rows(args.data)
    _refuse_overwrite(args.output, args.overwrite)
    _check_writable(args.output, "-o")
    launched = _launch(args)
    if launched is not None:
        return launched
    from sedge_pyro.inference.model import SEDGEModel

    kwargs: dict[str, Any] = {"structure": args.structure}
    for name in ("likelihood", "prior"):
        choice = _choice(getattr(args, name), name)
        if choice is not None:
            kwargs[name] = choice
    if args.hidden is not None:
        kwargs["hidden"] = _hidden(args.hidden)
    model = SEDGEModel(graph, **kwargs)
    start = time.perf_counter()
    model.fit(
        data,
        steps=args.steps,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device=args.device,
        seed=args.seed,
        progress=not args.quiet,
    )
    seconds = time.perf_counter() - start
    model.save(args.output, overwrite=args.overwrite)
    if args.quiet or not _main_process():
        return 0
    chosen = model.chosen if model.structure in ("sparse", "dense", "joint") else {}
    steps = ", ".join(
        f"{k}{' ' + chosen[k] if k in chosen else ''} {h.get('steps', 0)} steps"
        for k, h in model.history.items()
    )
    print(
        f"fitted a {model.structure} SEDGEModel on {model.data_rows['rows']} rows ({steps}) in "
        f"{seconds:.1f} s{_processes()}; saved to {args.output}"
    )
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from sedge_pyro.diagnostics import spec_satisfaction

    target = parse_target(args.target)
    options = parse_options(args.option)
    draws = args.n * args.chains
    if args.n > 0 and args.chains > 0 and draws > MAX_DRAWS:
        raise OptionError(
            f"-n {args.n} with --chains {args.chains} asks for {draws} draws: expected at most "
            f"{MAX_DRAWS:,} in one call (split the work into several calls)"
        )
    if args.output is not None:
        if Path(args.output).suffix not in (".csv", ".nc"):
            raise OptionError(f"-o {args.output!r}: expected a .csv or .nc file")
        _refuse_overwrite(args.output, args.overwrite)
        _check_writable(args.output, "-o")
    launched = _launch(args)
    if launched is not None:
        return launched
    import torch

    from sedge_pyro.inference.model import SEDGEModel

    model = SEDGEModel.load(args.model, device=args.device or "cpu")
    try:
        samples = model.sample(
            target,
            n=args.n,
            method=args.method,
            chains=args.chains,
            seed=args.seed,
            tolerance=args.tolerance,
            progress=not args.quiet,
            **options,
        )
    except (MemoryError, RuntimeError) as err:
        # torch reports a failed CPU allocation as a plain RuntimeError
        if not isinstance(err, MemoryError | torch.OutOfMemoryError) and (
            "can't allocate memory" not in str(err)
        ):
            raise
        raise OptionError(
            f"-n {args.n} with --chains {args.chains}: {draws} draws do not fit in memory; "
            "expected fewer draws"
        ) from None
    text = ", ".join(Var(k, v).to_text() for k, v in samples.target.items())
    line = (
        f"sampled {samples.chains} x {samples.draws} draws of {', '.join(samples.features)} "
        f"by {samples.method} for {text} in {samples.info.get('seconds', 0.0):.2f} s"
    )
    try:
        sat = spec_satisfaction(samples, likelihood=model, tolerance=args.tolerance)
        line += f"; mean P(target | x) = {float(sat.summary.loc['likelihood', 'all']):.3f}"
    except OptionError:
        pass  # models C-E have no per-spec likelihood to score the draws with
    if not _main_process():
        return 0  # every process holds all the draws; rank 0 writes them
    if args.output is not None:
        samples.save(args.output, overwrite=args.overwrite)
        if not args.quiet:
            print(f"{line}; wrote {args.output}")
    else:
        samples.to_dataframe(index=True).to_csv(sys.stdout, index=False)
        if not args.quiet:
            print(line, file=sys.stderr)
    # the draws' verdict: printed even under --quiet, and the exit status stays 0
    for warning in samples.warnings:
        print(f"sedge: warning: {warning}", file=sys.stderr)
    return 0


def _cmd_backtest(args: argparse.Namespace) -> int:
    from sedge_pyro.inference.model import backtest

    graph = _read_graph(args.graph)
    target = parse_target(args.target)
    whole("--steps", args.steps, none_ok=True, expected="a positive number", sep=" ")
    if args.json is not None:
        _refuse_overwrite(args.json, args.overwrite)
        _check_writable(args.json, "--json")
    data = _read_csv(args.data)
    model: dict[str, Any] = {"structure": args.structure}
    for name in ("likelihood", "prior"):
        choice = _choice(getattr(args, name), name)
        if choice is not None:
            model[name] = choice
    if args.hidden is not None:
        model["hidden"] = _hidden(args.hidden)
    result = backtest(
        graph,
        data,
        target,
        methods=args.methods,
        model=model,
        draws=args.draws,
        min_rows=args.min_rows,
        max_combos=args.max_combos,
        seed=args.seed,
        steps=args.steps,
        progress=not args.quiet,
        device=args.device,
    )
    if args.json is not None:
        from sedge_pyro.atomic import atomic_path

        with atomic_path(args.json, overwrite=args.overwrite) as tmp:
            Path(tmp).write_text(
                json.dumps(result.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8"
            )
    print(result)
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from sedge_pyro.legacy import convert

    _check_writable(args.new, "NEW")
    path = convert(args.old, args.new, trust=args.trust, overwrite=args.overwrite)
    if not args.quiet:
        print(f"converted {args.old} to {path} (safetensors and JSON: opening it runs no code)")
    return 0


def _cmd_examples(args: argparse.Namespace) -> int:
    from sedge_pyro.examples import EXAMPLES

    if args.identify:
        from sedge_pyro.experiments import paper as demo

        demo.run_registry(n=args.rows, seed=args.seed)
        return 0
    width = max(len(n) for n in EXAMPLES)
    for name, ex in EXAMPLES.items():
        target = ", ".join(Var(k, v).to_text() for k, v in ex.target.items())
        print(f"{name:<{width}}  {ex.title}; target {target}  [{ex.reference}]")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from sedge_pyro.experiments import paper as demo

    demo.run(
        out=args.out, quick=args.quick, seed=args.seed, force=args.force, progress=not args.quiet
    )
    return 0


def _cmd_images(args: argparse.Namespace) -> int:
    from sedge_pyro.experiments import images as demo_images

    demo_images.run_images(
        out=args.out,
        quick=args.quick,
        seed=args.seed,
        pool=args.pool,
        force=args.force,
        device=args.device,
        progress=not args.quiet,
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sedge",
        description="Structural extrapolated data generation: is p(X | Z = z) identifiable "
        "for a specification combination never seen in training?",
    )
    parser.add_argument("--version", action="version", version=f"sedge-pyro {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    arguments.add_identify(sub, _cmd_identify)
    arguments.add_fit(sub, _cmd_fit)
    arguments.add_sample(sub, _cmd_sample)
    arguments.add_backtest(sub, _cmd_backtest)
    arguments.add_convert(sub, _cmd_convert)
    arguments.add_examples(sub, _cmd_examples)
    arguments.add_demo(sub, _cmd_demo)
    arguments.add_images(sub, _cmd_images)
    arguments.add_threads(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sedge`` command; return its exit code (2 for bad input).

    :param argv: arguments without the program name (default ``sys.argv[1:]``).
    :returns: the exit code.
    """
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        with threads(args.threads, "--threads"), warnings.catch_warnings():
            _check_seed(getattr(args, "seed", None))
            rows = getattr(args, "rows", None)
            if rows is not None and not 1 <= rows <= MAX_ROWS:
                raise OptionError(f"--rows {rows}: expected a whole number from 1 to {MAX_ROWS:,}")
            # ArviZ 0.23's once-a-day notice about its own refactor is not the user's concern
            warnings.filterwarnings(
                "ignore", message=r"(?s).*ArviZ is undergoing", category=FutureWarning
            )
            code = int(args.func(args))
            sys.stdout.flush()  # a closed pipe shows here, inside the try, not at exit
            return code
    except BrokenPipeError:
        # the reader left (`sedge ... | head -1`): not an error; as the Python docs recommend,
        # point stdout at devnull so the flush at exit does not fail again
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 1
    except SedgeError as err:
        print(f"sedge: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"sedge: error: {err}", file=sys.stderr)
        return 2
