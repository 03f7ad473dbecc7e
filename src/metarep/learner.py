"""Meta-learning for any PyTorch model: FO-ANIL, ANIL, FO-MAML, MAML, Reptile, Meta-SGD, ProtoNets (MATH.md §3).

A :class:`MetaLearner` wraps a network split into a feature extractor and a head (usually an
``nn.Linear``), or a plain network plus the names of the parameters the inner loop adapts. It is a
thin estimator over the functional engine (:mod:`metarep.engine`): it owns the modules, the outer
optimizer and ``functional_call``; the inner loops and meta-gradients are the engine's, written for
one task and ``vmap``-ed over the leading task axis (no Python loop over tasks). When only the head
adapts (FO-ANIL, ANIL), the features of a batch are computed once and the inner loop runs on them.
Any method of the registry (:mod:`metarep.methods.registry`) with ``learner=True`` runs here.

Each method's spec says what the inner loop adapts (head, features or all) and how the outer
gradient is formed (first order, second order, Reptile or pretrain: the table of
:mod:`metarep.engine`). The outer update averages over the tasks of a batch and hands the result to a
standard ``torch.optim`` optimizer as the gradient; Reptile with ``torch.optim.SGD(lr=ε)`` is the
interpolation ``θ ← θ + ε (mean φ_i − θ)``; ``pretrain`` is the no-meta-learning baseline (joint
training on all tasks, fine-tuned at test time).

The inner loop's rule (:mod:`metarep.inner`): plain SGD, momentum or Adam (``inner_optimizer``),
with a fixed step size, a learned scalar (``learn_inner_lr=True``) or, for ``metasgd``, a learned
step size per parameter entry; ProtoNets (``protonet``) start it from the support set's prototypes.

The default loss is ``"mse"`` (the few-shot literature's); ``loss="half_mse"`` is the theory's ½·MSE,
with which FO-ANIL on ``x ↦ xᵀBw`` gives the linear harness's gradient (:mod:`metarep.engine`).

Example::

    features = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU())
    learner = MetaLearner(features, nn.Linear(40, 1), method="fo_anil", inner_lr=0.01)
    learner.fit(task_batches, iterations=2000)      # batches with a leading task axis
    params = learner.adapt(X_support, y_support)    # one task
    y_hat = learner.predict(X_query, params)        # (n,) for targets y (n,)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from . import engine, inner, limits
from .batch import TaskBatch
from .learner_params import HyperParameters
from .network import (
    BATCH_NAMES,
    Split,
    build_optimizer,
    cast_batch,
    check_batch,
    check_vmappable,
    explain_vmap_errors,
    is_batch,
    resolve_keys,
    strip,
)
from .progress import progress_bar
from .runtime import check_threads, threads_for

Params = engine.Params
LossFn = engine.Loss
REGRESSION_LOSSES = ("mse", "half_mse")  # targets are cast to the model's dtype


class MetaLearner(HyperParameters):
    """A meta-learner over any ``torch.nn.Module`` (scikit-learn style: ``fit`` returns ``self``).

    **Arguments:**

    - ``features``: the feature extractor, ``(n, *input_shape) -> (n, h)``; or, with ``head=None``,
      the whole network, in which case ``adapt_params`` names what the inner loop adapts.
    - ``head``: the last layer, ``(n, h) -> (n, out)``, usually ``nn.Linear(h, out)``.
    - ``method``: ``"fo_anil"``, ``"anil"``, ``"fo_maml"``, ``"maml"``, ``"reptile"``, ``"metasgd"``
      (a learned step size per parameter entry), ``"protonet"`` (prototype head from the support
      set; ``head=nn.Linear(h, N)``, ``loss="cross_entropy"``), the ``"pretrain"`` baseline (no inner
      loop in training; fine-tuned at test time), or any method registered with ``learner=True``
      (:mod:`metarep.methods.registry`).
    - ``inner_lr``: inner step size ``α`` (the initial value of learned ones). ``inner_steps``: inner
      steps in training (and the default number at test time; ``protonet``: none in training, 0 by default).
    - ``inner_optimizer``: ``"sgd"``, ``"momentum"``, ``"adam"`` or a gradient transformation
      (:mod:`metarep.inner`), differentiated through by second-order methods.
    - ``learn_inner_lr``: learn one scalar step size in the outer loop (every method with a meta-gradient).
    - ``optimizer``: the outer optimizer: ``None`` (``torch.optim.Adam`` with ``outer_lr``), a
      ``torch.optim.Optimizer`` class (built with ``lr=outer_lr``), a callable ``params -> Optimizer``
      (e.g. ``functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)``), or an optimizer already
      built over the model's parameters.
    - ``outer_lr``: outer learning rate when ``optimizer`` is ``None`` or a class.
    - ``loss``: ``"mse"`` (regression, ``y (n,)`` or ``(n, out)``), ``"half_mse"`` (the theory's
      ½·MSE), ``"cross_entropy"`` (classification, integer ``y (n,)``), or a callable
      ``(pred, y) -> scalar`` for one task (:data:`metarep.engine.LOSSES`).
    - ``adapt_params``: parameter names (or dotted prefixes, such as ``"head"`` or ``"features.4"``)
      the inner loop adapts; default: what the method's spec adapts (the head for ``fo_anil``/``anil``,
      the features for a ``"features"`` method, every parameter otherwise).
      With a split model the names start with ``features.`` or ``head.``.

    The modules are trained in place. Fitted state: ``model_`` (the module that is trained),
    ``adapt_keys_``, ``optimizer_``, ``history_`` (one dict per outer step: ``step``, ``loss``, the
    mean query loss after adaptation; for ``reptile`` the query set is part of the inner data, for
    ``pretrain`` the loss is taken at ``θ`` on all data), ``n_iter_`` and ``inner_lr_`` (the learned
    step sizes: a 0-dim tensor, ``{name: tensor}`` for ``metasgd``, or ``None``).

    Data come as :class:`metarep.tasks.TaskBatch` (or any 4-tuple of tensors) with a leading task
    axis: ``X_in (T, n_in, *input_shape)``, ``y_in (T, n_in[, out])``, ``X_out (T, n_out, ...)``,
    ``y_out (T, n_out[, out])``.
    """

    def __init__(
        self,
        features: nn.Module,
        head: nn.Module | None = None,
        *,
        method: str = "fo_anil",
        inner_lr: float = 0.01,
        inner_steps: int = 1,
        optimizer: Any = None,
        outer_lr: float = 1e-3,
        loss: str | LossFn = "mse",
        adapt_params: Sequence[str] | None = None,
        inner_optimizer: Any = "sgd",
        learn_inner_lr: bool = False,
    ):
        self.features = features
        self.head = head
        self.method = method
        self.inner_lr = inner_lr
        self.inner_steps = inner_steps
        self.optimizer = optimizer
        self.outer_lr = outer_lr
        self.loss = loss
        self.adapt_params = adapt_params
        self.inner_optimizer = inner_optimizer
        self.learn_inner_lr = learn_inner_lr
        self._validate()  # what is known now; the model's parameters and batches are checked at first use

    def _ensure_setup(self) -> None:
        if getattr(self, "model_", None) is not None:
            return
        self._validate()
        model = self.features if self.head is None else Split(self.features, self.head)
        check_vmappable(model)
        names = [n for n, _ in model.named_parameters()]
        if not names:
            raise ValueError("features/head: the model has no parameters")
        if self.adapt_params is not None:
            keys = resolve_keys(names, [self.adapt_params] if isinstance(self.adapt_params, str) else self.adapt_params)
        else:
            adapts = self._spec().adapts
            if adapts != "all" and self.head is None:
                raise ValueError(
                    f"adapt_params: method {self.method!r} adapts the {adapts} only; pass head=nn.Linear(...) "
                    "separately or name the head's parameters, e.g. adapt_params=['fc'] for a layer called fc"
                )
            keys = engine.adapt_keys(names, adapts, lambda n: n.startswith("head."))
        self.model_ = model
        self.adapt_keys_ = keys
        # features once per batch when the inner loop touches the head only
        self._head_only = self.head is not None and all(k.startswith("head.") for k in keys)
        self._loss_fn: LossFn = engine.get_loss(self.loss)
        kind = self._spec().learned_lr or ("scalar" if self.learn_inner_lr else None)
        self.inner_lr_ = inner.learned_step_sizes(kind, self._params(True), keys, self.inner_lr)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        extra = inner.step_size_tensors(self.inner_lr_)
        return build_optimizer(self.optimizer, list(self.model_.parameters()), self.outer_lr, extra)

    def _rule(self, detach: bool = False) -> engine.InnerRule:
        """The inner loop's rule: step sizes (learned or ``inner_lr``), optimizer, start (ProtoNets)."""
        transform = inner.make_transform(self.inner_optimizer)
        return inner.make_rule(self.inner_lr_, self.inner_lr, transform, self._spec().start, detach)

    def _steps(self, steps: int | None = None) -> int:
        """Inner steps: ``steps``, else those of training (none for a method without inner loop)."""
        return steps if steps is not None else (self.inner_steps if self._spec().inner_loop else 0)

    def _explain(self, X: torch.Tensor, batched: bool = True):
        """Errors of vmap and of inputs of the wrong shape, explained (``X``: the inputs given)."""
        return explain_vmap_errors(self.model_, tuple(X.shape[2 if batched else 1 :]))

    # ------------------------------------------------------------------ functional pieces

    def _params(self, detach: bool = False) -> Params:
        return {k: (v.detach() if detach else v) for k, v in self.model_.named_parameters()}

    def _prepare(self, batch, names: Sequence[str] = BATCH_NAMES) -> TaskBatch:
        """``batch`` checked (:func:`~metarep.network.check_batch`: shapes, labels for ``cross_entropy``), on the
        model's device and dtype (labels as given); remembers the targets' trailing shape."""
        labels = self.loss == "cross_entropy"
        classes = self.head.out_features if labels and isinstance(self.head, nn.Linear) else None
        check_batch(batch, labels, classes, names)
        b = cast_batch(self.model_, batch, self.loss in REGRESSION_LOSSES)
        self.target_shape_ = tuple(b.y_in.shape[2:])
        return b

    def _forward_fn(self) -> Callable[[Params, torch.Tensor], torch.Tensor]:
        """``forward(params, X)`` of the part the inner loop runs: the head (on features) or the whole model."""
        if self._head_only:
            module, buffers = self.model_.head, dict(self.model_.head.named_buffers())
            return lambda p, X: functional_call(module, ({**strip(p, "head."), **buffers},), (X,))
        module, buffers = self.model_, dict(self.model_.named_buffers())
        return lambda p, X: functional_call(module, ({**p, **buffers},), (X,))

    def _features(self, params: Params, X: torch.Tensor) -> torch.Tensor:
        """Features of every task's samples, ``(T, n, *input) -> (T, n, h)``, one ``vmap`` over tasks."""
        module = self.model_.features
        fp = {**strip(params, "features."), **dict(module.named_buffers())}
        return vmap(lambda x: functional_call(module, (fp,), (x,)), randomness="different")(X)

    def _inner_inputs(self, params: Params, X: torch.Tensor) -> tuple[Params, torch.Tensor]:
        """(the parameters the inner-loop forward sees, its inputs): head params and features, or everything."""
        if self._head_only:
            return {k: v for k, v in params.items() if k.startswith("head.")}, self._features(params, X)
        return params, X

    # ------------------------------------------------------------------ the meta-gradient

    def _grads_and_loss(self, batch) -> tuple[Params, float]:
        """Mean outer gradient over the batch's tasks (shaped like the parameters) and the mean outer loss."""
        return engine.meta_grad(
            self._forward_fn(),
            self._loss_fn,
            self._params(),
            batch,
            keys=self.adapt_keys_,
            order=self._spec().order,
            alpha=self._rule(),
            steps=self._steps(),
            inputs=self._inner_inputs,
        )

    def meta_grad(self, batch) -> Params:
        """The outer gradient on one batch of tasks (mean over tasks), shaped like the parameters.

        ``batch``: ``(X_in, y_in, X_out, y_out)`` with a leading task axis. Does not step.
        """
        self._ensure_setup()
        b = self._prepare(batch)
        with self._explain(b.X_in):
            return self._grads_and_loss(b)[0]

    # ------------------------------------------------------------------ fit / adapt / predict

    def fit(
        self,
        tasks: Iterable | TaskBatch,
        iterations: int | None = None,
        *,
        progress: bool | None = None,
        allow_long: bool = False,
        threads: int | None = 0,
    ) -> MetaLearner:
        """Meta-train on a source of task batches; returns ``self``.

        **Arguments:**

        - ``tasks``: an iterable of batches ``(X_in, y_in, X_out, y_out)`` with a leading task axis
          (e.g. a generator of fresh tasks), or one batch, used at every step (a fixed pool).
        - ``iterations``: outer steps, ``>= 1``; ``None`` runs until ``tasks`` is exhausted (required for one batch).
        - ``progress``: progress bar; ``None`` shows it on a terminal only.
        - ``allow_long``: allow more than :data:`metarep.limits.MAX_STEPS` iterations, or an estimated time
          beyond :data:`metarep.limits.MAX_DAYS` days (:func:`metarep.limits.check_fit`; refused otherwise).
        - ``threads``: torch intra-op threads while fitting, restored afterwards: ``0`` (default) chosen from
          the size of the first batch (:func:`metarep.runtime.choose_threads`: one for small models), a count
          to force one, ``None`` to leave torch's setting alone.

        Every batch is checked before it is used (:func:`metarep.network.check_batch`): a ``ValueError``
        or ``TypeError`` names the tensor, the shape expected and the one received. Raises
        ``FloatingPointError`` (with ``history_`` kept) if the loss turns NaN or infinite.
        """
        self._ensure_setup()
        if iterations is not None and (isinstance(iterations, bool) or not isinstance(iterations, int)):
            raise TypeError(f"iterations: expected an integer or None, got {type(iterations).__name__}")
        if iterations is not None and iterations < 1:
            raise ValueError(f"iterations: must be an integer >= 1 (None: until tasks is exhausted), got {iterations}")
        limits.check_fit(iterations, allow_long=allow_long)
        check_threads(threads)
        if is_batch(tasks):
            if iterations is None:
                raise ValueError("iterations: required when fitting on a single batch of tasks")
            fixed = tasks
            source: Iterator = iter(lambda: fixed, None)
        else:
            try:
                source = iter(tasks)
            except TypeError:
                raise TypeError(
                    "tasks: expected an iterable of batches (X_in, y_in, X_out, y_out) or one such batch, "
                    f"got {type(tasks).__name__}"
                ) from None
        self.model_.train()
        self.optimizer_ = getattr(self, "optimizer_", None) or self._make_optimizer()
        self.history_ = getattr(self, "history_", [])
        self.n_iter_ = getattr(self, "n_iter_", 0)
        bar = progress_bar(iterations, enabled=progress, desc=self.method, unit="step")
        scope = contextlib.ExitStack()  # the threads, set once the first batch tells the step's size
        try:
            done = 0
            while iterations is None or done < iterations:
                try:
                    batch = next(source)
                except StopIteration:
                    break
                b = self._prepare(batch)
                if done == 0:  # the memory (and time) of the batches this call runs
                    numbers = self._check_size(b, iterations, allow_long)
                    scope.enter_context(threads_for(threads, numbers))
                with self._explain(b.X_in):
                    grads, loss = self._grads_and_loss(b)
                self.n_iter_ += 1
                self.history_.append({"step": self.n_iter_, "loss": loss})
                if not math.isfinite(loss):
                    raise FloatingPointError(
                        f"meta-training diverged at step {self.n_iter_} (loss {loss}); lower inner_lr "
                        f"({self.inner_lr}) or the outer learning rate"
                    )
                for k, p in self.model_.named_parameters():
                    p.grad = grads[k]
                for k, p in self._rule().learned().items():
                    p.grad = grads[k]
                self.optimizer_.step()
                self.optimizer_.zero_grad(set_to_none=True)
                done += 1
                bar.update(1)
                if done % 50 == 0:
                    bar.set_postfix(loss=f"{loss:.4g}")
        finally:
            bar.close()
            scope.close()
        return self

    def _check_size(self, b: TaskBatch, iterations: int | None, allow_long: bool) -> float:
        """:func:`metarep.limits.check_fit` with the sizes of the batch ``b``; returns the numbers of its
        inputs (what picks the threads, :func:`metarep.runtime.choose_threads`)."""
        params = dict(self.model_.named_parameters())
        sizes = dict(
            tasks=b.X_in.shape[0],
            samples=b.X_in.shape[1] + b.X_out.shape[1],
            params=sum(p.numel() for p in params.values()),
            inner_steps=self._steps(),
        )
        limits.check_fit(
            iterations,
            allow_long=allow_long,
            adapted=sum(params[k].numel() for k in self.adapt_keys_),
            number_bytes=next(iter(params.values())).element_size(),
            **sizes,
        )
        return float(b.X_in.numel() + b.X_out.numel())

    def adapt(self, X: torch.Tensor, y: torch.Tensor, steps: int | None = None) -> Params:
        """Adapted parameters of one task from its support set: ``X (n, *input_shape)``, ``y (n[, out])``.

        Returns a dict of every parameter (name -> tensor, detached), ready for :meth:`predict`.
        ``steps`` defaults to ``inner_steps`` (``protonet``: 0, the prototype head). Works before ``fit``.
        """
        self._ensure_setup()
        steps = self._steps(steps)
        if not (isinstance(steps, int) and steps >= 0):
            raise ValueError(f"steps: must be an integer >= 0, got {steps!r}")
        if not (isinstance(X, torch.Tensor) and isinstance(y, torch.Tensor)):
            raise TypeError(
                f"X, y: expected tensors (one task's support set), got {type(X).__name__}, {type(y).__name__}"
            )
        if X.ndim < 1 or y.ndim < 1 or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"y: expected shape ({X.shape[0] if X.ndim else 'n'}[, out]) to match X {tuple(X.shape)}, "
                f"got {tuple(y.shape)}"
            )
        b = self._prepare((X[None], y[None], X[None], y[None]), names=("X", "y", "X", "y"))
        p0 = self._params(detach=True)
        with torch.no_grad(), self._explain(b.X_in):
            inner_p, Z = self._inner_inputs(p0, b.X_in)
            sub, rest = engine.split(inner_p, self.adapt_keys_)
            phi = engine.adapt_batch(self._forward_fn(), self._loss_fn, sub, rest, Z, b.y_in, self._rule(True), steps)
        return {**p0, **{k: v[0] for k, v in phi.items()}}

    def predict(self, X: torch.Tensor, params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Model output on ``X (n, *input_shape)`` at ``params`` (from :meth:`adapt`) or at the meta-learned
        ones: ``(n,)`` when the targets seen in ``fit``/``adapt``/``evaluate`` were ``(n,)`` and the
        output is ``(n, 1)``, the model's output otherwise (``(n, out)``; logits ``(n, N)``)."""
        self._ensure_setup()
        if not isinstance(X, torch.Tensor):
            raise TypeError(f"X: expected a tensor (n, *input_shape), got {type(X).__name__}")
        p = next(self.model_.parameters())
        P = self._params(detach=True) if params is None else dict(params)
        X = X.to(p.device, p.dtype) if X.is_floating_point() else X.to(p.device)
        with torch.no_grad(), self._explain(X, batched=False):
            out = functional_call(self.model_, ({**P, **dict(self.model_.named_buffers())},), (X,))
        regression = self.loss in REGRESSION_LOSSES or callable(self.loss)
        if regression and getattr(self, "target_shape_", None) == () and out.ndim == 2 and out.shape[-1] == 1:
            out = out[:, 0]
        return out

    def evaluate(self, batch, steps: Sequence[int] = (0, 1, 10)) -> dict[int, dict[str, torch.Tensor]]:
        """Query loss (and accuracy, for ``cross_entropy``) of every task after each number of inner steps.

        ``batch``: ``(X_in, y_in, X_out, y_out)`` with a leading task axis; the inner loop runs on the
        support set (vectorised over tasks, once for all ``steps``). Returns
        ``{s: {"loss": (T,), "accuracy": (T,)}}``.
        """
        self._ensure_setup()
        steps = sorted(set(int(s) for s in steps))
        if not steps or steps[0] < 0:
            raise ValueError(f"steps: must be integers >= 0, got {steps!r}")
        b = self._prepare(batch)
        out: dict[int, dict[str, torch.Tensor]] = {}
        with torch.no_grad(), self._explain(b.X_in):
            p0 = self._params(detach=True)
            inner_p, Z_in = self._inner_inputs(p0, b.X_in)
            _, Z_out = self._inner_inputs(p0, b.X_out)
            sub, rest = engine.split(inner_p, self.adapt_keys_)
            forward = self._forward_fn()
            path = engine.adapt_path(forward, self._loss_fn, sub, rest, Z_in, b.y_in, self._rule(True), steps)
            for s, phi in zip(steps, path):
                pred = vmap(lambda s_, X_: forward({**rest, **s_}, X_), randomness="different")(phi, Z_out)
                res = {"loss": vmap(self._loss_fn)(pred, b.y_out)}
                if self.loss == "cross_entropy":
                    res["accuracy"] = (pred.argmax(-1) == b.y_out).to(pred.dtype).mean(-1)
                out[s] = res
        return out
