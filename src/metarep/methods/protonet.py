"""Prototypical networks (Snell, Swersky, Zemel 2017) as a head computed from the support set.

For an ``N``-way episode with support features ``z_j = f_θ(x_j)`` and labels ``y_j``, the class
prototypes are ``c_k = mean_{j: y_j = k} z_j`` and the logits of a query ``z`` are
``−‖z − c_k‖²``. Expanding, ``−‖z − c_k‖² = 2 c_kᵀ z − ‖c_k‖² − ‖z‖²``, and the last term is the
same for every class, so the linear head ``W_k = 2 c_k``, ``b_k = −‖c_k‖²`` gives the same softmax,
cross-entropy and predicted class (Snell et al., §2.4). That head is the inner loop's starting
point (:class:`metarep.engine.InnerRule` ``start``), so ProtoNets run on the same ``MetaLearner``
API, backbone and episodes as FO-ANIL: training takes no inner step and differentiates through the
prototypes (``order = "second"``); test-time steps, if asked for, fine-tune the prototype head.

The learner's ``head`` must be ``nn.Linear(h, N)`` with a bias; its own weights are not used.
"""

from __future__ import annotations

import torch

from .registry import MethodSpec, register


def prototypes(Z: torch.Tensor, y: torch.Tensor, ways: int) -> torch.Tensor:
    """Class means of the support features ``Z (n, h)`` with labels ``y (n,)`` in ``0..ways-1``, ``(ways, h)``.

    A class absent from the support set gets the zero prototype.
    """
    onehot = (y[:, None] == torch.arange(ways, device=y.device)).to(Z.dtype)  # (n, N), vmap-safe
    counts = onehot.sum(0).clamp(min=1)
    return (onehot.T @ Z) / counts[:, None]  # c_k = mean of the z_j with y_j = k


def squared_euclidean_logits(Z: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """``−‖z − c_k‖²`` for queries ``Z (m, h)`` and prototypes ``C (N, h)``: ``(m, N)``."""
    return -((Z[:, None, :] - C[None, :, :]) ** 2).sum(-1)


def prototype_head(sub: dict[str, torch.Tensor], Z: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The linear head ``W = 2C``, ``b = −‖c_k‖²`` of one episode (``sub``: the head's weight and bias)."""
    wkey = next(k for k in sub if k.endswith("weight"))
    bkey = next(k for k in sub if k.endswith("bias"))
    C = prototypes(Z, y, sub[wkey].shape[0])
    return {wkey: 2 * C, bkey: -(C**2).sum(-1)}


SPEC = register(
    MethodSpec(
        name="protonet",
        label="ProtoNets",
        kind="meta",
        adapts="head",
        order="second",
        start=prototype_head,
        inner_loop=False,
        losses=("cross_entropy",),
        harness=False,
    )
)
