"""The ``sedge`` command line: ``sedge identify``, ``sedge examples``, ``sedge demo``.

Bad input ends in one line on standard error, ``sedge: error: ...``, and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sedge_pyro import __version__
from sedge_pyro.errors import DataError, SedgeError, TargetError
from sedge_pyro.expr import Interval, Var

__all__ = ["main", "parse_target"]

_TARGET = re.compile(r"^(?P<name>[^=<>]+?)\s*(?P<op><=|>=|=|<|>)\s*(?P<value>.+)$")


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
    res = identify(graph, target, seen, tolerance=args.tolerance)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, ensure_ascii=False))
        return 0
    print(note + res.explain())
    if args.latex and res.factorization is not None:
        query = res.query.to_latex() if res.query is not None else "p(X)"
        sign = r"\propto" if res.factorization.proportional else "="
        print(f"latex: {query} {sign} {res.factorization.to_latex()}")
    return 0


def _cmd_examples(args: argparse.Namespace) -> int:
    from sedge_pyro.examples import EXAMPLES

    width = max(len(n) for n in EXAMPLES)
    for name, ex in EXAMPLES.items():
        target = ", ".join(Var(k, v).to_text() for k, v in ex.target.items())
        print(f"{name:<{width}}  {ex.title}; target {target}  [{ex.reference}]")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from sedge_pyro import demo

    demo.run(n=args.rows, seed=args.seed)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sedge",
        description="Structural extrapolated data generation: is p(X | Z = z) identifiable "
        "for a specification combination never seen in training?",
    )
    parser.add_argument("--version", action="version", version=f"sedge-pyro {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("identify", help="identify p(X | Z_T = z) for a graph and a target")
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
    p.set_defaults(func=_cmd_identify)

    p = sub.add_parser("examples", help="list the example registry")
    p.set_defaults(func=_cmd_examples)

    p = sub.add_parser("demo", help="identify every registry example and print a table")
    p.add_argument("--rows", type=int, default=2000, help="rows to simulate per example")
    p.add_argument("--seed", type=int, default=0, help="simulation seed")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sedge`` command; return its exit code (2 for bad input).

    :param argv: arguments without the program name (default ``sys.argv[1:]``).
    :returns: the exit code.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except SedgeError as err:
        print(f"sedge: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"sedge: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
