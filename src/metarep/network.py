"""A network as :class:`metarep.learner.MetaLearner` sees it: the feature/head split, parameter
names, the outer optimizer, what ``vmap`` over tasks requires of its modules (checked before
training), batches cast to the model, and errors raised inside ``vmap`` or by inputs of the wrong
shape re-explained as what a model must not do or expects."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .batch import TaskBatch


def check_vmappable(model: nn.Module) -> None:
    """Raise ``ValueError`` naming the fix if ``model`` has modules that ``vmap`` over tasks cannot run.

    Normalisation layers that track running statistics (``BatchNorm*``, ``InstanceNorm*`` with
    ``track_running_stats=True``) update their buffers in place from each forward pass, which cannot
    be done separately for every task of a ``vmap``.
    """
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            raise ValueError(
                f"module {name or '<root>'!r} ({type(m).__name__}) tracks running statistics, which vmap cannot "
                "update per task; build it with track_running_stats=False, call "
                "torch.func.replace_all_batch_norm_modules_(model), or use nn.GroupNorm / nn.LayerNorm"
            )
        if type(m).__name__ == "_SpectralNorm" or hasattr(m, "weight_u"):
            raise ValueError(
                f"module {name or '<root>'!r} uses spectral_norm, whose power iteration updates buffers in place, "
                "which vmap cannot do per task; remove it or use nn.utils.parametrizations.weight_norm"
            )
        if isinstance(m, nn.modules.lazy.LazyModuleMixin) and m.has_uninitialized_params():
            raise ValueError(f"module {name or '<root>'!r} ({type(m).__name__}) is lazy; run one forward pass first")


def is_vmap_error(e: RuntimeError) -> bool:
    msg = str(e)
    return any(k in msg for k in ("vmap", "Batching rule", "in-place", "inplace", "BatchedTensor"))


def vmap_error(e: RuntimeError) -> ValueError:
    return ValueError(
        f"the model cannot be vmapped over tasks: {str(e).splitlines()[0]} -- modules must not modify buffers or "
        "inputs in place (BatchNorm: track_running_stats=False; spectral_norm: not supported) and must not branch "
        "on tensor values"
    )


SHAPE_ERRORS = ("cannot be multiplied", "batch2", "size mismatch", "expected input", "channels, but got", "must match")


def expected_sample_shape(model: nn.Module) -> str:
    """What one sample must look like for the model's first linear or convolutional layer (a guess
    from the first such module registered), e.g. ``"(..., 1)"`` or ``"(3, H, W)"``."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            return f"(..., {m.in_features})"
        if isinstance(m, nn.modules.conv._ConvNd):
            return "(" + ", ".join([str(m.in_channels)] + ["H", "W", "D"][: len(m.kernel_size)]) + ")"
    return "(unknown)"


@contextlib.contextmanager
def explain_vmap_errors(model: nn.Module | None = None, sample: tuple[int, ...] | None = None) -> Iterator[None]:
    """Re-raise errors of ``vmap`` as a ``ValueError`` that says what the model must not do, and (with
    ``model`` and the ``sample`` shape given) shape errors as one naming the expected and given shapes."""
    try:
        yield
    except RuntimeError as e:
        if is_vmap_error(e):
            raise vmap_error(e) from e
        if model is not None and sample is not None and any(k in str(e) for k in SHAPE_ERRORS):
            raise ValueError(
                f"X: each sample has shape {tuple(sample)}, but the model's first layer expects "
                f"{expected_sample_shape(model)} ({str(e).splitlines()[0]})"
            ) from e
        raise


def is_batch(obj: Any) -> bool:
    """Whether ``obj`` is a 4-tuple of tensors ``(X_in, y_in, X_out, y_out)``."""
    return isinstance(obj, tuple) and len(obj) == 4 and all(isinstance(t, torch.Tensor) for t in obj)


BATCH_NAMES = ("X_in", "y_in", "X_out", "y_out")


def check_batch(
    batch: Any, labels: bool = False, classes: int | None = None, names: Sequence[str] = BATCH_NAMES
) -> None:
    """Raise ``TypeError``/``ValueError`` naming the tensor, its shape and what was expected, unless ``batch``
    is ``X_in (T, n_in, *input)``, ``y_in (T, n_in[, out])``, ``X_out (T, n_out, *input)``,
    ``y_out (T, n_out[, out])`` with ``T, n_in, n_out >= 1`` and finite floating values. ``labels``: the
    targets are class labels (``loss="cross_entropy"``): integers ``(T, n)``, in ``[0, classes)`` when
    ``classes`` is known. ``names``: how the four tensors are called in the messages."""
    if not is_batch(batch):
        got = type(batch).__name__
        if isinstance(batch, (tuple, list)):
            got += " of " + ", ".join(type(t).__name__ for t in batch) if batch else " (empty)"
        raise TypeError(f"batch: expected a tuple of four tensors {tuple(names)} with a leading task axis, got {got}")
    tasks = [t.shape[0] if t.ndim else None for t in batch]
    if len(set(tasks)) > 1:
        odd = names[next(i for i, n in enumerate(tasks) if n != tasks[0] or n is None)]
        shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in zip(names, batch))
        raise ValueError(f"{odd}: the four tensors must have the same tasks (leading axis), got {shapes}")
    for (nx, ny), (X, y) in zip(((names[0], names[1]), (names[2], names[3])), (batch[:2], batch[2:])):
        if X.ndim < 2:
            raise ValueError(f"{nx}: expected (tasks, samples, *input_shape), got shape {tuple(X.shape)}")
        if X.shape[0] == 0 or X.shape[1] == 0:
            what = "no tasks" if X.shape[0] == 0 else "no samples"
            raise ValueError(f"{nx}: {what} (shape {tuple(X.shape)}); each batch needs >= 1 task with >= 1 sample")
        T, n = X.shape[:2]
        if tuple(y.shape[:2]) != (T, n) or y.ndim > (2 if labels else 3):
            expected = f"({T}, {n})" + ("" if labels else f" or ({T}, {n}, out)")
            raise ValueError(f"{ny}: expected shape {expected} to match {nx} {tuple(X.shape)}, got {tuple(y.shape)}")
        for name, t in ((nx, X), (ny, y)):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name}: holds NaN or infinite values")
        if labels:
            _check_labels(ny, y, classes)
    X_in, y_in, X_out, y_out = batch
    if X_out.shape[0] != X_in.shape[0] or X_out.shape[2:] != X_in.shape[2:] or y_out.shape[2:] != y_in.shape[2:]:
        raise ValueError(
            f"{names[2]}, {names[3]}: shapes {tuple(X_out.shape)}, {tuple(y_out.shape)} do not match {names[0]}, "
            f"{names[1]} {tuple(X_in.shape)}, {tuple(y_in.shape)} (the same tasks, input and target shapes)"
        )


def _check_labels(name: str, y: torch.Tensor, classes: int | None) -> None:
    """Class labels: an integer tensor with values in ``[0, classes)``."""
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(
            f"{name}: loss='cross_entropy' needs integer class labels (torch.long), got {y.dtype}; "
            "convert them with .long(), or use a regression loss"
        )
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or (classes is not None and hi >= classes):
        allowed = f"0 to {classes - 1} (the head's {classes} outputs)" if classes is not None else ">= 0"
        raise ValueError(f"{name}: class labels must be {allowed}, got labels from {lo} to {hi}")


def cast_batch(model: nn.Module, batch: Any, regression: bool) -> TaskBatch:
    """``batch`` (checked by :func:`check_batch` first) on the model's device: floating inputs in its dtype,
    targets in its dtype (``regression``) or as given (class labels)."""
    p = next(model.parameters())
    X_in, y_in, X_out, y_out = batch

    def x_cast(X):
        return X.to(p.device, p.dtype) if X.is_floating_point() else X.to(p.device)

    def y_cast(y):
        return y.to(p.device, p.dtype) if regression else y.to(p.device)

    return TaskBatch(x_cast(X_in), y_cast(y_in), x_cast(X_out), y_cast(y_out))


class Split(nn.Module):
    """``head(features(x))``; parameter names start with ``features.`` and ``head.``."""

    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def resolve_keys(names: Sequence[str], wanted: Sequence[str]) -> tuple[str, ...]:
    """Parameter names matching ``wanted``: exact names or dotted prefixes (``"head"`` → ``head.weight``, ...)."""
    keys = []
    for w in wanted:
        hit = [n for n in names if n == w or n.startswith(w + ".")]
        if not hit:
            raise ValueError(f"adapt_params: {w!r} matches no parameter; parameters are {', '.join(names)}")
        keys += [n for n in hit if n not in keys]
    return tuple(n for n in names if n in keys)  # module order


def strip(d: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``d`` whose names start with ``prefix``, the prefix removed."""
    return {k[len(prefix) :]: v for k, v in d.items() if k.startswith(prefix)}


def build_optimizer(
    opt: Any, params: list[torch.Tensor], outer_lr: float, extra: list[torch.Tensor] = ()
) -> torch.optim.Optimizer:
    """The outer optimizer over ``params`` and ``extra`` (learned step sizes) from
    ``MetaLearner(optimizer=...)``: ``None`` (Adam), a class, a callable ``params -> Optimizer`` or an
    optimizer already built over ``params`` (``extra`` is added to it as a new parameter group)."""
    if opt is None:
        return torch.optim.Adam(params + list(extra), lr=outer_lr)
    if isinstance(opt, torch.optim.Optimizer):
        owned = {id(p) for g in opt.param_groups for p in g["params"]}
        if not owned >= {id(p) for p in params}:
            raise ValueError("optimizer: the optimizer instance does not hold all of the model's parameters")
        missing = [p for p in extra if id(p) not in owned]
        if missing:
            opt.add_param_group({"params": missing})
        return opt
    params = params + list(extra)
    if isinstance(opt, type) and issubclass(opt, torch.optim.Optimizer):
        return opt(params, lr=outer_lr)
    if callable(opt):
        built = opt(params)
        if not isinstance(built, torch.optim.Optimizer):
            raise ValueError("optimizer: the callable must return a torch.optim.Optimizer")
        return built
    raise ValueError(f"optimizer: expected None, a torch.optim.Optimizer class or instance, or a callable, got {opt!r}")
