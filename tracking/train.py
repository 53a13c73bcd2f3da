"""Train HIPTrack / HIPTrack-CLS.

    python tracking/train.py --script hiptrack --config hiptrack_cls --save_dir ./output --mode single
    python tracking/train.py --script hiptrack --config hiptrack_cls --save_dir ./output --mode multiple --nproc_per_node 4

``--mode multiple`` starts ``--nproc_per_node`` processes with torch.distributed.run (NCCL on GPUs,
gloo on CPU); multi-node runs add --nnodes / --node_rank / --master_addr / --master_port. The exit
code is non-zero when any process fails.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from lib.dataset.paths import add_path_arguments
from lib.train.run import launch_distributed, run_training

LAUNCHER_ONLY = ("--nproc_per_node", "--nnodes", "--node_rank", "--master_addr", "--master_port")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of training runs and of their torchrun workers."""
    parser = argparse.ArgumentParser(description="Train HIPTrack / HIPTrack-CLS.")
    parser.add_argument("--script", default="hiptrack", choices=["hiptrack"], help="experiment family")
    parser.add_argument("--config", default="hiptrack_cls", help="experiment name (experiments/<script>/) or YAML path")
    parser.add_argument("--save_dir", default="./output", help="checkpoints/, logs/ and tensorboard/ go here")
    parser.add_argument("--mode", default="single", choices=["single", "multiple"],
                        help="one process, or torch.distributed with --nproc_per_node processes per node")
    parser.add_argument("--nproc_per_node", type=int, default=1, help="processes per node (--mode multiple)")
    parser.add_argument("--nnodes", type=int, default=1, help="nodes (multi-node --mode multiple)")
    parser.add_argument("--node_rank", type=int, default=0, help="rank of this node (multi-node)")
    parser.add_argument("--master_addr", default=None, help="address of node 0 (multi-node)")
    parser.add_argument("--master_port", type=int, default=29500, help="port on node 0 (multi-node)")
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                        help="continue from the newest checkpoint of this run, or from the file given")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: TRAIN.SEED)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    add_path_arguments(parser)
    parser.add_argument("--no_val", action="store_true", help="skip validation (DATA.VAL)")
    parser.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    return parser


def worker_argv(argv: list[str]) -> list[str]:
    """The arguments a torchrun worker gets: everything but the launcher's own options."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCHER_ONLY:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    """Train (``--mode single`` or inside a torchrun worker) or launch the workers; the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    in_worker = "LOCAL_RANK" in os.environ
    if args.mode == "multiple" and not in_worker:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return launch_distributed(args, Path(__file__).resolve(), worker_argv(argv))
    try:
        return run_training(args)  # logs its own errors: 1 = training failed, 2 = bad config / paths
    except KeyboardInterrupt:
        logging.getLogger("lib.train").error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
