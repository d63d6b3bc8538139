"""One node of the two-node shard test, started by torchrun: pretrain as a JSON config says.

With ``--ctrl-c-at N`` rank 0 sends itself SIGINT (a Ctrl-C) at the end of global step N: the
ranks agree to save ``last.ckpt`` there, mid-epoch, and stop.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from contrastkit.train.config import build_config
from contrastkit.train.run import pretrain


class CtrlCAt(Callback):
    """Rank 0 interrupts itself after global step `step`."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, module, outputs, batch, idx: int) -> None:
        if trainer.global_rank == 0 and trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config", help="a JSON file of PretrainConfig values")
    parser.add_argument("--ctrl-c-at", type=int, help="global step after which to interrupt")
    args = parser.parse_args()
    config = build_config([json.loads(Path(args.config).read_text())])
    pretrain(config, callbacks=[CtrlCAt(args.ctrl_c_at)] if args.ctrl_c_at else [])


if __name__ == "__main__":
    main()
