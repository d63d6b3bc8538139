"""Gradient caching: the loss over a whole batch while the network holds one micro-batch's graph.

After Gao et al. 2021 ("Scaling Deep Contrastive Learning Batch Size under Memory Limited
Setup"). A contrastive loss couples every sample of the batch, but each sample's embedding
depends on its own input only, so the parameter gradient is Σ_samples (dL/de)·(de/dθ):

1. embed each micro-batch (⌈B/M⌉ of near-equal sizes, at most M) without a graph and join
   them (`cached_forward`);
2. compute the loss over all B embeddings, made leaves, and its gradient with respect to them;
3. re-forward each micro-batch with a graph and backpropagate that slice of the gradient
   (`CachedStep.backward`), so the parameter gradients add up to the full-batch gradient.

It costs one extra forward pass, and is exact (to rounding) when the networks hold no batch
norm. With batch norm, each micro-batch is normalised by its own statistics, so the gradient is
that of training with micro-batch BN: it differs from the full-batch gradient, as the batch
statistics do. SyncBatchNorm synchronises each micro-batch's statistics across ranks. Running
statistics advance once per micro-batch, as in the re-forward: the buffers the first pass
changes are restored after it. The random state each micro-batch's first pass starts from is
replayed for its re-forward (dropout, stochastic depth), and left as the first pass left it.

The loss's graph over the B embeddings is kept until the last micro-batch, whose backward
includes the loss itself, so one backward reaches every parameter (DDP reduces gradients once,
there; the earlier ones run under `no_sync`). Mixed precision needs nothing more: every pass
runs under the caller's autocast, and every backward goes through the caller's `backward`,
which applies the grad scaler's scale alike to all of them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from ..methods import Embeddings, Method, StepOutput

RngState = tuple[Tensor, Tensor | None]


@dataclass
class CachedStep:
    """A step's loss over the whole batch (`output`), computed from embeddings without a graph,
    and what `backward` needs to turn it into parameter gradients micro-batch by micro-batch."""

    output: StepOutput
    method: Method
    views: Sequence[Tensor]
    leaves: list[Tensor]
    spans: list[slice]
    rng_states: list[RngState]

    def backward(
        self,
        backward: Callable[[Tensor], None] = Tensor.backward,
        no_sync: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        """Accumulate the full-batch loss's parameter gradients into `.grad`.

        `backward(tensor)` backpropagates a scalar (Lightning's `manual_backward`, which scales
        for fp16); every micro-batch but the last runs inside `no_sync()` (DDP's).
        """
        grads = torch.autograd.grad(
            self.output.loss, self.leaves, retain_graph=True, allow_unused=True
        )
        device = self.views[0].device
        end_state = _rng_state(device)
        for index, (span, state) in enumerate(zip(self.spans, self.rng_states, strict=True)):
            last = index == len(self.spans) - 1
            _set_rng_state(state, device)
            with nullcontext() if last else no_sync():
                embeddings = self.method.embed([v[span] for v in self.views], with_targets=False)
                # Its gradient with respect to the parameters is this slice's share of dL/dθ.
                surrogate = [
                    (e * g[span]).sum()
                    for e, g in zip(embeddings.loss_inputs(), grads, strict=True)
                    if g is not None
                ]
                if last:  # the loss itself, for the parameters it holds (learnable scale, bias)
                    surrogate.append(self.output.loss)
                if surrogate:
                    backward(functools.reduce(torch.add, surrogate))
        _set_rng_state(end_state, device)


def cached_forward(
    method: Method, views: Sequence[Tensor], labels: Tensor | None, micro_batch_size: int
) -> CachedStep:
    """Embed `views` at most `micro_batch_size` samples at a time without a graph and compute
    the loss over the whole batch from the joined embeddings."""
    spans = micro_batches(views[0].shape[0], micro_batch_size)
    device = views[0].device
    buffers = [b for module in method.online_modules() for b in module.buffers()]
    saved = [b.clone() for b in buffers]
    parts, rng_states = [], []
    with torch.no_grad():
        for span in spans:
            rng_states.append(_rng_state(device))
            parts.append(method.embed([v[span] for v in views]))
        for buffer, value in zip(buffers, saved, strict=True):
            buffer.copy_(value)  # the re-forward updates BN running statistics, once
    embeddings = Embeddings.cat(parts)
    leaves = [
        e.detach().to(torch.promote_types(e.dtype, torch.float32)).requires_grad_()
        for e in embeddings.loss_inputs()
    ]
    loss, components = method.loss_from(embeddings.with_loss_inputs(leaves), labels)
    output = StepOutput(loss, embeddings.features, components)
    return CachedStep(output, method, views, leaves, spans, rng_states)


def micro_batches(batch: int, micro_batch_size: int) -> list[slice]:
    """⌈batch / micro_batch_size⌉ consecutive slices of near-equal sizes (differing by at most
    one), so that no micro-batch is much smaller than the others: batch norm needs samples."""
    if micro_batch_size < 1:
        raise ValueError(f"micro_batch_size must be at least 1, got {micro_batch_size}")
    n = math.ceil(batch / micro_batch_size)
    return [slice(batch * i // n, batch * (i + 1) // n) for i in range(n)]


def _rng_state(device: torch.device) -> RngState:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: RngState, device: torch.device) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)
