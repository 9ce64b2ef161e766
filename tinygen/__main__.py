"""``python -m tinygen`` / ``tinygen``: the command line.

Until the data and training issue brings ``tinygen train``/``sample``/``eval``, the one
subcommand is ``demo``: train a small MLP classifier on generated two-moons data.
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tinygen", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="train an MLP classifier on generated two-moons data")
    demo.add_argument("--epochs", type=int, default=30)
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo
        result = run_demo(epochs=args.epochs, seed=args.seed)
        return 0 if result["test_accuracy"] > 0.5 else 1
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
