"""The arguments of each ``sedge`` subcommand (argparse), one function per subcommand; the
commands themselves are in :mod:`sedge_pyro.cli`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from sedge_pyro.options import default_threads

#: a subcommand: parsed arguments -> exit code
Command = Callable[[argparse.Namespace], int]


def add_identify(sub: Any, func: Command) -> None:
    """The ``sedge identify`` subcommand and its arguments, running ``func``."""
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
    p.set_defaults(func=func)


def add_fit(sub: Any, func: Command) -> None:
    """The ``sedge fit`` subcommand and its arguments, running ``func``."""
    p = sub.add_parser("fit", help="fit a SEDGE model to training rows and save it")
    p.add_argument("graph", help="graph file (.json node-link or .gml) or a registry example")
    p.add_argument(
        "data",
        help="training rows (S=1), a column per feature and spec: a CSV file (read into "
        "memory), or a Parquet file or a folder of Parquet or CSV files (streamed)",
    )
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
    add_nproc(p, "fit data-parallel in N processes on this machine (gloo on cpu, NCCL on cuda)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing MODEL file")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no summary line")
    p.set_defaults(func=func)


def add_nproc(p: Any, text: str) -> None:
    """``--nproc N``: start the command in ``N`` processes through ``torch.distributed.run``."""
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help=f"{text}, started by torch.distributed.run (default 1; under your own torchrun "
        "or srun leave it out)",
    )


def add_sample(sub: Any, func: Command) -> None:
    """The ``sedge sample`` subcommand and its arguments, running ``func``."""
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
    add_nproc(p, "spread the chains over N processes on this machine")
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
    p.set_defaults(func=func)


def add_backtest(sub: Any, func: Command) -> None:
    """The ``sedge backtest`` subcommand and its arguments, running ``func``."""
    p = sub.add_parser(
        "backtest",
        help="which method to trust: hold out rare seen combinations like the target and score",
        description="Hold out the rarest seen combinations of the target's shape (per target "
        "spec its event or the complement), fit without them, sample each with every method "
        "and score the draws against the rows held out (MMD / its split-half floor). Prints a "
        "report ending in the method to trust; exit code 0, or 2 for bad input.",
    )
    p.add_argument(
        "data",
        help="training rows (S=1), a column per feature and spec: a CSV file (read into "
        "memory), or a Parquet file or a folder of Parquet or CSV files (streamed)",
    )
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
    p.set_defaults(func=func)


def add_convert(sub: Any, func: Command) -> None:
    """The ``sedge convert`` subcommand and its arguments, running ``func``."""
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
    p.set_defaults(func=func)


def add_examples(sub: Any, func: Command) -> None:
    """The ``sedge examples`` subcommand and its arguments, running ``func``."""
    p = sub.add_parser("examples", help="list the example registry")
    p.add_argument(
        "--identify", action="store_true", help="identify every example and print a table"
    )
    p.add_argument("--rows", type=int, default=2000, help="--identify: rows per example")
    p.add_argument("--seed", type=int, default=0, help="--identify: simulation seed")
    p.set_defaults(func=func)


def add_demo(sub: Any, func: Command) -> None:
    """The ``sedge demo`` subcommand and its arguments, running ``func``."""
    p = sub.add_parser(
        "demo", help="the paper's synthetic experiment: identify, fit A-E, sample, score"
    )
    p.add_argument("--quick", action="store_true", help="smaller and faster (about a minute)")
    p.add_argument("--out", default="sedge-demo-out", help="output folder (default sedge-demo-out)")
    p.add_argument("--force", action="store_true", help="replace a different run in --out")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=func)


def add_images(sub: Any, func: Command) -> None:
    """The ``sedge images`` subcommand and its arguments, running ``func``."""
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
    p.set_defaults(func=func)


def add_threads(sub: Any) -> None:
    """``--threads`` on every subcommand."""
    for p in sub.choices.values():
        p.add_argument(
            "--threads",
            type=int,
            metavar="N",
            help=f"torch CPU threads (default: {default_threads()})",
        )
