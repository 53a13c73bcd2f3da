"""Train HIPTrack / HIPTrack-CLS (the entry point is :func:`lib.train.run.main`).

    python tracking/train.py --script hiptrack --config hiptrack_cls --save_dir ./output --mode single
    python tracking/train.py --script hiptrack --config hiptrack_cls --save_dir ./output --mode multiple --nproc_per_node 4

``--mode multiple`` starts ``--nproc_per_node`` processes with torch.distributed.run (NCCL on GPUs,
gloo on CPU); multi-node runs add --nnodes / --node_rank / --master_addr / --master_port. The exit
code is non-zero when any process fails. ``python -m lib.train.run`` takes the same arguments.
"""
from __future__ import annotations

import sys

from lib.train.run import main

if __name__ == "__main__":
    sys.exit(main())
