"""Pretraining from shards: stopped mid-epoch and resumed, a run ends with the weights of the
uninterrupted run, in one process and on two torchrun "nodes" (gloo on this machine) whose
SimCLR loss gathers its negatives from both.

The saved `last.ckpt` holds LitData's loader position, so the resumed epoch reads the samples
the uninterrupted one read after the stop, not the epoch from its start.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from contrastkit.errors import TrainingInterruptedError
from contrastkit.train.config import ConfigError
from contrastkit.train.run import pretrain
from tests.train.shard_node import CtrlCAt

from .small_run import small_config

pytest.importorskip("litdata", reason="training from shards needs litdata (the shards extra)")

from contrastkit.data.shards import write_shards
from tests.data.test_shards import SHARD_MB, write_folder

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_TIMEOUT_S = 300  # one two-node run: 25 to 50 s measured on the shared 2-core machine
BATCH = {1: 8, 2: 4}  # per rank, alone and on two nodes
STEPS_PER_EPOCH = {1: 24 // 8, 2: 24 // 2 // 4}  # of the 24 training images


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shard-data")
    write_folder(root / "images")
    write_shards(root / "images", root / "shards", "litdata", shard_mb=SHARD_MB)
    return root / "shards"


def _values(shards: Path, out: Path, **extra: object) -> dict[str, object]:
    return {
        "dataset": "imagefolder",
        "data_dir": str(shards),
        "cache_dir": str(out.parent / "cache"),
        "method": "simclr",
        "loss": "nt_xent",  # gathers the other ranks' embeddings as negatives
        "epochs": 2,
        "batch_size": 8,
        "projector_hidden_dim": 32,
        "projector_out_dim": 16,
        "probe": False,
        "log_spectrum": False,
        "loggers": "csv",
        "progress": False,
        "out": str(out),
        **extra,
    }


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _assert_same_weights(resumed: Path, straight: Path, stopped: dict) -> None:
    expected, got = _weights(straight), _weights(resumed)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)
    assert any(not torch.equal(stopped[n], expected[n]) for n in expected)  # a real stop


def _assert_saved_mid_epoch(checkpoint: Path, step: int, batches: int, batch: int) -> dict:
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert saved["global_step"] == step
    position = saved["epoch_position"]
    assert position["batches"] == batches
    assert position["loader"]["num_samples_yielded"] == batches * batch  # LitData's position
    return saved["state_dict"]


def test_one_process_stopped_mid_epoch_resumes_to_the_uninterrupted_weights(
    shards: Path, tmp_path: Path
) -> None:
    pretrain(small_config(**_values(shards, tmp_path / "straight", workers=1)))
    stopped = tmp_path / "stopped"
    at = STEPS_PER_EPOCH[1] + 2  # after the second batch of epoch 1
    with pytest.raises(TrainingInterruptedError):
        pretrain(small_config(**_values(shards, stopped, workers=1)), callbacks=[CtrlCAt(at)])
    weights = _assert_saved_mid_epoch(stopped / "last.ckpt", at, 2, BATCH[1])
    pretrain(small_config(**_values(shards, stopped, workers=1, resume=True)))
    _assert_same_weights(stopped / "last.ckpt", tmp_path / "straight" / "last.ckpt", weights)


def test_a_mid_epoch_checkpoint_of_other_ranks_is_refused_in_one_line(
    shards: Path, tmp_path: Path
) -> None:
    """Each rank resumes its own draws and loader: a different rank count cannot continue."""
    out = tmp_path / "run"
    with pytest.raises(TrainingInterruptedError):
        pretrain(small_config(**_values(shards, out, workers=0)), callbacks=[CtrlCAt(1)])
    saved = torch.load(out / "last.ckpt", map_location="cpu", weights_only=True)
    position = saved["epoch_position"]
    saved["epoch_position"] = {**position, "ranks": [position, position]}  # as two ranks save
    torch.save(saved, out / "last.ckpt")
    with pytest.raises(ConfigError, match="saved inside an epoch by 2 ranks, this run has 1"):
        pretrain(small_config(**_values(shards, out, workers=0, resume=True)))


# --- two nodes ------------------------------------------------------------------------------


def _torchrun_missing() -> str | None:
    if importlib.util.find_spec("torch.distributed.run") is None:
        return "torchrun (torch.distributed.run) is not installed"
    if not (dist.is_available() and dist.is_gloo_available()):
        return "torch.distributed has no gloo backend here"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_nodes(config: Path, ctrl_c_at: int | None = None) -> list[int]:
    """Run the two nodes (torchrun each, node ranks 0 and 1) to their end; their exit codes.

    Whatever is still alive at the end (a node whose peer stopped) is killed, group and all.
    """
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "OMP_NUM_THREADS": "1",
    }
    extra = ["--ctrl-c-at", str(ctrl_c_at)] if ctrl_c_at is not None else []
    nodes = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"),
                *("--nproc-per-node", "1", "--node-rank", str(rank)),
                *("--master-addr", "127.0.0.1", "--master-port", str(port)),
                *("-m", "tests.train.shard_node", str(config), *extra),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, to kill with its workers
        )
        for rank in (0, 1)
    ]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=LAUNCH_TIMEOUT_S)[0])
    except subprocess.TimeoutExpired:
        pytest.fail(f"the two torchrun nodes did not finish in {LAUNCH_TIMEOUT_S} s")
    finally:
        for node in nodes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.pid, signal.SIGKILL)
            node.wait()
    if ctrl_c_at is None:
        for node, output in zip(nodes, outputs, strict=True):
            assert node.returncode == 0, output[-3000:]
    return [node.returncode for node in nodes]


@pytest.mark.slow
@pytest.mark.skipif(_torchrun_missing() is not None, reason=str(_torchrun_missing()))
def test_two_nodes_killed_mid_epoch_resume_to_the_uninterrupted_weights(
    shards: Path, tmp_path: Path
) -> None:
    def config(out: Path, name: str, **extra: object) -> Path:
        values = _values(shards, out, num_nodes=2, devices=1, accelerator="cpu", workers=1, **extra)
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({**values, "batch_size": BATCH[2]}))
        return path

    _two_nodes(config(tmp_path / "straight", "straight"))
    stopped = tmp_path / "stopped"
    at = STEPS_PER_EPOCH[2] + 2  # after the second batch of epoch 1 on each rank
    codes = _two_nodes(config(stopped, "stopped"), ctrl_c_at=at)
    assert codes != [0, 0]  # stopped, not finished
    weights = _assert_saved_mid_epoch(stopped / "last.ckpt", at, 2, BATCH[2])
    _two_nodes(config(stopped, "resumed", resume=True))
    _assert_same_weights(stopped / "last.ckpt", tmp_path / "straight" / "last.ckpt", weights)
