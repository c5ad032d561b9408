"""`potstill <command> ...`: parses arguments and calls the stage; errors are one line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from potstill import distributed
from potstill.commands import (
    convert_features,
    distill,
    doctor,
    encode,
    export,
    featurize,
    inspect,
    merge_features,
    quantize,
    run,
    train,
)
from potstill.commands import eval as eval_command

# name -> (the command's module: add_arguments + run, one-line help)
COMMANDS: dict[str, tuple[ModuleType, str]] = {
    "run": (run, "a recipe end to end: quantize, featurize, distill, train, export, eval (resumes)"),
    "encode": (encode, "embed the lines of a text file with a teacher"),
    "featurize": (featurize, "embed a corpus with the teacher into resumable shards"),
    "merge-features": (merge_features, "join the featurized parts of one job"),
    "convert-features": (convert_features, "tokenlearn <-> potstill featurized formats"),
    "distill": (distill, "vocabulary, token embeddings, PCA and SIF into a first static model"),
    "train": (train, "contrastive training against the teacher, then a born-again round"),
    "export": (export, "int8/float16/float32 model2vec folder with modules.json and a model card"),
    "quantize": (quantize, "quantize a teacher (schemes, fidelity screen, per-layer sensitivity map)"),
    "eval": (eval_command, "evaluate static models (and a teacher) on MTEB task folders"),
    "inspect": (inspect, "print the manifest of a potstill output"),
    "doctor": (doctor, "print platform, MLX device, BLAS and a measured matmul speed"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="potstill", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rank = f"[rank {distributed.env_rank()}] " if distributed.launched() else ""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"{rank}%(levelname)s %(name)s: %(message)s",
    )
    module = COMMANDS[args.command][0]
    try:
        return int(module.run(args) or 0)
    except (ValueError, OSError) as e:  # our errors are ValueError subclasses with a fix in them
        if args.verbose:
            raise
        print(f"potstill {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"potstill {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
