"""Worker process: epochs of the real training loop, with the package ``lib`` of a chosen source tree.

Started by ``bench_parallel_training.py`` (:class:`LoopProcess`) for each training it times; it is not a
user-facing script. Each worker builds one ``bench_train_loop.LoopRun`` (``Trainer.train_epoch`` with
the real loader, actor, loss, clipping and optimiser) on ``--data`` and runs one epoch per request, so
that several trainings can run at the same moment (side by side) or one at a time.

``--source DIR`` runs the loop with the ``lib`` of another checkout of this project, e.g. the code as
it was before a change (``git worktree add ../before <commit>``): ``DIR`` goes first on ``sys.path``
before anything imports ``lib`` (the measuring code, ``LoopRun``, stays this checkout's; it uses only
the package's public entry points). Acceptable here only: the target is a different copy of the
package, which cannot be imported next to the installed one. Without ``--source`` the installed
``lib`` is used.

Protocol (one line each way; replies start with ``@@``): once built the worker replies
``@@ready <samples per epoch> <path of the lib it imported>``; ``epoch`` -> one timed epoch, replies
``@@<seconds>``; ``quit`` ends. An error replies ``@@error <message>`` and exits 1.

    python benchmarks/loop_worker.py --data data/synthetic_quickstart --samples 200 --threads 1 [--source ../before]
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a generated synthetic dataset folder")
    parser.add_argument("--config", default="hiptrack_cls_quickstart", help="experiment name or YAML path")
    parser.add_argument("--samples", type=int, default=96, help="samples per epoch (default 96)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model and the sampler (default 0)")
    parser.add_argument("--source", type=Path, default=None,
                        help="a checkout of this project whose lib to run (default: the installed one)")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    return parser.parse_args(argv)


def reply(message: str) -> None:
    print(f"@@{message}", flush=True)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.source is not None:
        if not (args.source / "lib" / "__init__.py").is_file():
            reply(f"error --source {args.source}: no lib/__init__.py there (not a checkout of this project)")
            sys.exit(1)
        sys.path.insert(0, str(args.source.resolve()))
    import lib  # noqa: E402 (after the source tree is put first)
    import torch
    from bench_train_loop import LoopRun, loop_config

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            run = LoopRun(loop_config(args.config, args.samples, args.opts), args.data.resolve(), 1, Path(tmp),
                          seed=args.seed)
        except Exception as exc:  # reported to the parent, which names this worker
            reply(f"error {type(exc).__name__}: {exc}")
            sys.exit(1)
        reply(f"ready {run.samples} {Path(lib.__file__).parent}")
        try:
            for line in sys.stdin:
                if line.strip() != "epoch":
                    break
                reply(f"{run():.6f}")
        except Exception as exc:
            reply(f"error {type(exc).__name__}: {exc}")
            raise
        finally:
            run.close()


if __name__ == "__main__":
    main()
