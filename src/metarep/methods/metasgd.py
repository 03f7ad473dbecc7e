"""Meta-SGD (Li, Zhou, Chen, Li 2017): MAML with a learned step size for every parameter entry.

Per task: ``φ = θ − α ⊙ ∇_θ L_in(θ)`` (``s`` such steps for ``inner_steps = s``), and the outer
loop learns ``θ`` and ``α`` (same shape as ``θ``) together from ``∇_{θ,α} L_out(φ)``, second
order through the inner loop. ``α`` starts at ``inner_lr`` everywhere and is not constrained.
Runs in :class:`~metarep.learner.MetaLearner` only (:mod:`metarep.inner`, :mod:`metarep.engine`).
"""

from __future__ import annotations

from .registry import MethodSpec, register

SPEC = register(
    MethodSpec(
        name="metasgd",
        label="Meta-SGD",
        kind="meta",
        adapts="all",
        order="second",
        learned_lr="per_parameter",
        harness=False,
    )
)
