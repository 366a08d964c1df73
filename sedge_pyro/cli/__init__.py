"""The ``sedge`` command line: ``sedge identify``, ``fit``, ``sample``, ``backtest``, ``convert``,
``examples``, ``demo``, ``images``.

Bad input ends in one line on standard error, ``sedge: error: ...``, and exit code 2.
``sedge identify`` exits 1 when an assumption check fails on the training rows (the report is
still printed in full), 0 when none fails; with ``--strict`` a failed check is bad input (2).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sedge_pyro.errors import DataError, OptionError, SedgeError, TargetError
from sedge_pyro.expr import Interval, Var
from sedge_pyro.options import SEED_LIMIT, default_threads, threads, whole
from sedge_pyro.version import __version__

__all__ = ["main", "parse_options", "parse_target"]

_TARGET = re.compile(r"^(?P<name>[^=<>]+?)\s*(?P<op><=|>=|=|<|>)\s*(?P<value>.+)$")
#: the most draws (``-n`` times ``--chains``) one ``sedge sample`` call makes
MAX_DRAWS = 10**8
#: the most rows ``--rows`` simulates (an example's rows are a few floats each)
MAX_ROWS = 10**7


def _scalar(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _number(text: str, token: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise TargetError(f"target {token!r}: {text!r} is not a number") from None


def parse_target(tokens: Sequence[str]) -> dict[str, Any]:
    """Parse command-line target tokens into a target mapping.

    ``z1=1`` is a point (numbers become int or float, anything else a category);
    ``z1<0.8`` / ``z1<=0.8`` is ``Interval(high=0.8)``, ``z2>1`` / ``z2>=1`` is
    ``Interval(low=1)``, and ``z1=0.2..0.8`` is ``Interval(0.2, 0.8)`` (bounds included).

    :param tokens: the tokens.
    :returns: spec name -> value or :class:`Interval`.
    :raises TargetError: naming the token that does not parse or a spec given twice.

    >>> parse_target(["z1=1", "z2>1.0"])
    {'z1': 1, 'z2': Interval(low=1.0, high=None)}
    """
    target: dict[str, Any] = {}
    for token in tokens:
        match = _TARGET.match(token.strip())
        if not match:
            raise TargetError(
                f"target {token!r}: expected NAME=VALUE, NAME<VALUE, NAME>VALUE or NAME=LOW..HIGH"
            )
        name, op, value = match.group("name").strip(), match.group("op"), match.group("value")
        if value.lstrip()[:1] in ("=", "<", ">"):
            raise TargetError(
                f"target {token!r}: two comparison signs; expected NAME=VALUE, NAME<VALUE, "
                "NAME<=VALUE, NAME>VALUE, NAME>=VALUE or NAME=LOW..HIGH"
            )
        if name in target:
            raise TargetError(f"target names {name!r} twice: expected each specification once")
        if op in ("<", "<="):
            target[name] = Interval(high=_number(value, token))
        elif op in (">", ">="):
            target[name] = Interval(low=_number(value, token))
        elif ".." in value:
            low, high = value.split("..", 1)
            target[name] = Interval(_number(low, token), _number(high, token))
        else:
            target[name] = _scalar(value.strip())
    return target


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

    seen = _read_csv(args.data) if args.data else None
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


def parse_options(tokens: Sequence[str] | None) -> dict[str, Any]:
    """Parse ``KEY=VALUE`` tokens (``--option``) into a sampler's keyword arguments.

    Values are read as JSON where they parse (``500``, ``1e-3``, ``true``, ``null``,
    ``[64, 64]``) and kept as text otherwise (``loss=nll``).

    :param tokens: the tokens (``None``: none).
    :returns: option name -> value.
    :raises OptionError: naming a token without ``=`` or an option given twice.

    >>> parse_options(["steps=500", "step_size=1e-3", "loss=nll", "adjust=true"])
    {'steps': 500, 'step_size': 0.001, 'loss': 'nll', 'adjust': True}
    """
    options: dict[str, Any] = {}
    for token in tokens or ():
        key, sep, text = token.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise OptionError(f"option {token!r}: expected KEY=VALUE, e.g. --option steps=500")
        if key in options:
            raise OptionError(f"option {key!r} is given twice: expected each option once")
        try:
            options[key] = json.loads(text)
        except ValueError:
            options[key] = text.strip()
    return options


def _choice(text: str | None, name: str) -> str | dict[str, str] | None:
    """``gaussian`` as is; ``z1=gaussian,z2=flow`` as a dict node -> choice."""
    if text is None or "=" not in text:
        return text
    out: dict[str, str] = {}
    for item in text.split(","):
        node, sep, value = item.partition("=")
        if not sep or not node.strip() or not value.strip():
            raise OptionError(
                f"--{name} {text!r}: expected one choice or NODE=CHOICE pairs separated by "
                "commas, e.g. z1=gaussian,z2=flow"
            )
        out[node.strip()] = value.strip()
    return out


def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(h) for h in text.split(",") if h.strip())
    except ValueError:
        raise OptionError(f"--hidden {text!r}: expected layer sizes like 64,64") from None
    if any(h < 1 for h in sizes):
        raise OptionError(f"--hidden {text!r}: expected positive layer sizes like 64,64")
    return sizes


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


def _cmd_fit(args: argparse.Namespace) -> int:
    import time

    for flag in ("steps", "epochs", "batch_size"):
        name = f"--{flag.replace('_', '-')}"
        whole(name, getattr(args, flag), none_ok=True, expected="a positive number", sep=" ")
    if not args.lr > 0:
        raise OptionError(f"--lr {args.lr}: expected a positive learning rate")
    graph = _read_graph(args.graph)
    data = _read_csv(args.data)
    _refuse_overwrite(args.output, args.overwrite)
    _check_writable(args.output, "-o")
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
    if args.quiet:
        return 0
    chosen = model.chosen if model.structure in ("sparse", "dense", "joint") else {}
    steps = ", ".join(
        f"{k}{' ' + chosen[k] if k in chosen else ''} {h.get('steps', 0)} steps"
        for k, h in model.history.items()
    )
    print(
        f"fitted a {model.structure} SEDGEModel on {len(data)} rows ({steps}) in "
        f"{seconds:.1f} s; saved to {args.output}"
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

    p = sub.add_parser(
        "identify",
        help="identify p(X | Z_T = z) for a graph and a target",
        description="Identify p(X | Z_T = z) and check its assumptions on the training rows. "
        "Exit code 0: no check failed; 1: a check failed (the report says which, first); "
        "2: bad input, or a failed check with --strict.",
    )
    p.add_argument("graph", help="graph file (.json node-link or .gml) or a registry example")
    p.add_argument(
        "--target",
        nargs="+",
        metavar="SPEC=VALUE",
        help="target values: z1=1, z1<0.8, z2>1.0, z1=0.2..0.8 (default for examples: theirs)",
    )
    p.add_argument("--data", metavar="CSV", help="training rows (S=1), a column per spec")
    p.add_argument("--no-data", action="store_true", help="examples: identify without data")
    p.add_argument("--tolerance", type=float, help="continuous point targets: match within this")
    p.add_argument("--latex", action="store_true", help="also print the factorization in LaTeX")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--rows", type=int, default=2000, help="examples: rows to simulate")
    p.add_argument("--seed", type=int, default=0, help="examples: simulation seed")
    p.add_argument(
        "--strict",
        action="store_true",
        help="a failed assumption check is an error: one line naming it, exit code 2",
    )
    p.set_defaults(func=_cmd_identify)

    p = sub.add_parser("fit", help="fit a SEDGE model to training rows and save it")
    p.add_argument("graph", help="graph file (.json node-link or .gml) or a registry example")
    p.add_argument("data", help="training rows (S=1): a CSV with a column per feature and spec")
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="model file to write")
    p.add_argument(
        "--likelihood",
        help=(
            "auto (default: bernoulli/categorical by column, gaussian or flow by held-out "
            "likelihood), gaussian, bernoulli, monotone (0/1 specs: monotone in each parent), "
            "categorical, flow, or SPEC=KIND,... per spec"
        ),
    )
    p.add_argument(
        "--prior",
        help=(
            "auto (default: flow or gaussian by held-out likelihood), flow, empirical, diffusion, "
            "factorized, gaussian, dual, or FEATURE=KIND,..."
        ),
    )
    p.add_argument(
        "--structure",
        default="sparse",
        help="sparse (model A, default), dense, joint, reverse, reverse-factorized (models B-E)",
    )
    p.add_argument("--hidden", metavar="SIZES", help="MLP hidden layer sizes, e.g. 64,64")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--steps",
        type=int,
        help="SVI steps per component (default: 100 passes over the rows, 2,000 to 10,000 "
        "steps, with early stopping)",
    )
    group.add_argument("--epochs", type=int, help="passes over the data per component")
    p.add_argument("--batch-size", type=int, help="rows per step (default 256, at most the rows)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--overwrite", action="store_true", help="replace an existing MODEL file")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no summary line")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("sample", help="draw features for a target from a fitted model")
    p.add_argument("model", help="model file written by `sedge fit`")
    p.add_argument(
        "--target",
        nargs="+",
        required=True,
        metavar="SPEC=VALUE",
        help="target values: z1=1, z1<0.8, z2>=1.0, z1=0.2..0.8",
    )
    p.add_argument("-n", type=int, default=1000, help="draws per chain (default 1000)")
    p.add_argument(
        "--method",
        help="plan, opt, dps, langevin, svi, nuts, direct, or auto (the method a backtest on "
        "the model's training rows finds best; minutes) (default: plan for models A/B)",
    )
    p.add_argument("--chains", type=int, default=1, help="independent chains (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="a sampler option, repeatable (e.g. --option steps=500 --option loss=nll)",
    )
    p.add_argument("--tolerance", type=float, help="continuous point targets: match within this")
    p.add_argument("--device", help="cpu or cuda (default cpu)")
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write the draws to OUT.csv or OUT.nc (ArviZ NetCDF); default: CSV on stdout",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT file")
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar, no summary line (the draws' warnings still print)",
    )
    p.set_defaults(func=_cmd_sample)

    p = sub.add_parser(
        "backtest",
        help="which method to trust: hold out rare seen combinations like the target and score",
        description="Hold out the rarest seen combinations of the target's shape (per target "
        "spec its event or the complement), fit without them, sample each with every method "
        "and score the draws against the rows held out (MMD / its split-half floor). Prints a "
        "report ending in the method to trust; exit code 0, or 2 for bad input.",
    )
    p.add_argument("data", help="training rows (S=1): a CSV with a column per feature and spec")
    p.add_argument(
        "--graph",
        required=True,
        help="graph file (.json node-link or .gml) or a registry example",
    )
    p.add_argument(
        "--target",
        nargs="+",
        required=True,
        metavar="SPEC=VALUE",
        help="the novel target: z1<=0.8 z2>=1.0, z1=1, z1=0.2..0.8",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD",
        help="methods to compare (default: every method the model supports)",
    )
    p.add_argument("--draws", type=int, default=1000, help="draws per method and cell (1000)")
    p.add_argument(
        "--min-rows", type=int, default=50, help="fewest rows of a held-out cell (default 50)"
    )
    p.add_argument(
        "--max-combos", type=int, default=3, help="most cells held out, one fit each (default 3)"
    )
    p.add_argument("--steps", type=int, help="SVI steps per component (default: the model's)")
    p.add_argument("--likelihood", help="as for `sedge fit`")
    p.add_argument("--prior", help="as for `sedge fit`")
    p.add_argument("--structure", default="sparse", help="as for `sedge fit` (default sparse)")
    p.add_argument("--hidden", metavar="SIZES", help="MLP hidden layer sizes, e.g. 64,64")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--json", metavar="OUT", help="also write the result as JSON to OUT")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_backtest)

    p = sub.add_parser(
        "convert",
        help="rewrite a model file of the old pickle format as safetensors (needs --trust)",
        description="Rewrite a model file saved by an older sedge-pyro (a torch.save pickle) "
        "in today's format (safetensors and JSON). Opening the old file runs any code it "
        "carries: pass --trust only for a file you made or got from a source you trust. This is "
        "the one command that unpickles; the new file holds data only.",
    )
    p.add_argument("old", help="the old model file (torch.save pickle)")
    p.add_argument("new", help="the file to write, e.g. model.safetensors")
    p.add_argument(
        "--trust",
        action="store_true",
        help="I trust where OLD came from (required: opening it runs any code inside it)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing NEW file")
    p.add_argument("--quiet", action="store_true", help="no summary line")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("examples", help="list the example registry")
    p.add_argument(
        "--identify", action="store_true", help="identify every example and print a table"
    )
    p.add_argument("--rows", type=int, default=2000, help="--identify: rows per example")
    p.add_argument("--seed", type=int, default=0, help="--identify: simulation seed")
    p.set_defaults(func=_cmd_examples)

    p = sub.add_parser(
        "demo", help="the paper's synthetic experiment: identify, fit A-E, sample, score"
    )
    p.add_argument("--quick", action="store_true", help="smaller and faster (about a minute)")
    p.add_argument("--out", default="sedge-demo-out", help="output folder (default sedge-demo-out)")
    p.add_argument("--force", action="store_true", help="replace a different run in --out")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "images",
        help="novel attribute combinations of images (Sec. 5.2): concepts, identify, "
        "generate, judge, figure",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small and fast: about 4 minutes, rough numbers",
    )
    p.add_argument(
        "--out", default="sedge-images-out", help="output folder (default sedge-images-out)"
    )
    p.add_argument("--force", action="store_true", help="replace a different run in --out")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument(
        "--no-pool",
        dest="pool",
        action="store_false",
        help="no unlabelled pool: concepts and priors from the labelled training images only",
    )
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress lines or bars")
    p.set_defaults(func=_cmd_images)
    for p in sub.choices.values():
        p.add_argument(
            "--threads",
            type=int,
            metavar="N",
            help=f"torch CPU threads (default: {default_threads()})",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sedge`` command; return its exit code (2 for bad input).

    :param argv: arguments without the program name (default ``sys.argv[1:]``).
    :returns: the exit code.
    """
    parser = _parser()
    args = parser.parse_args(argv)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
