"""Pretraining (no meta-learning): joint training of every parameter on all data of all tasks, the
loss taken at ``θ`` itself, then fine-tuned at test time (:class:`~metarep.learner.MetaLearner` only).

Per task ``i`` the "outer gradient" is ``∇_θ L(θ; X_i, y_i)`` on its support and query sets
together (:mod:`metarep.engine`, order ``pretrain``); averaged over tasks this is plain gradient
descent on the mixture of tasks. It is the baseline of the few-shot benchmarks.
"""

from __future__ import annotations

from .registry import MethodSpec, register

SPEC = register(
    MethodSpec(name="pretrain", label="pretrained", kind="baseline", adapts="all", order="pretrain", harness=False)
)
