"""`potstill train --base DIR --features DIR [--loss contrastive] [--born-again] --out DIR`."""

from __future__ import annotations

import argparse

from potstill.commands.common import add_common, resolve_config
from potstill.config import LOSSES, TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", help="distilled model folder (potstill distill's output)")
    parser.add_argument("--features", help="featurized store of the same teacher")
    parser.add_argument("--loss", choices=list(LOSSES))
    parser.add_argument("--temperature", type=float, help="contrastive temperature")
    parser.add_argument("--batch-size", type=int, dest="batch_size")
    parser.add_argument(
        "--neighbour-block", type=int, dest="neighbour_block", help="batch runs of N neighbouring sentences"
    )
    parser.add_argument("--epochs", type=int, help="epochs per round (the step budget)")
    parser.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--weight-decay", type=float, dest="weight_decay")
    parser.add_argument(
        "--anchor-decay", type=float, dest="anchor_decay", help="weight decay toward the starting values"
    )
    parser.add_argument("--val-fraction", type=float, dest="val_fraction")
    parser.add_argument("--max-sentences", type=int, dest="max_sentences")
    parser.add_argument("--born-again", action="store_true", default=None, dest="born_again")
    parser.add_argument("--alpha", type=float, help="born-again: weight of the teacher's targets")
    parser.add_argument(
        "--born-again-rounds", type=int, dest="born_again_rounds", help="born-again rounds after round 1"
    )
    parser.add_argument("--seed", type=int)
    add_common(
        parser,
        out_help="run folder: round1/, [round2/ ...,] final/ and the manifest (resumed when it exists)",
    )


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args, TrainConfig, "train")
    if cfg is None:
        return 0
    from potstill.train.stage import train

    final = train(cfg)
    print(f"trained model in {final}")
    return 0
