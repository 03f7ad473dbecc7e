"""Few-shot benchmarks for :class:`metarep.learner.MetaLearner`: sinusoid regression (the classic
MAML benchmark), few-shot classification of scikit-learn's 8×8 digits, and a loader for an
Omniglot-style folder of images (one folder per class).

Every task source yields :class:`metarep.batch.TaskBatch` tensors with a leading task axis.
"""

from ._util import tune_inner_lr
from .images import ClassImages, EpisodeSampler, load_digits, load_image_folder
from .sinusoid import SinusoidTasks, sinusoid_net

__all__ = [
    "ClassImages",
    "EpisodeSampler",
    "SinusoidTasks",
    "load_digits",
    "load_image_folder",
    "sinusoid_net",
    "tune_inner_lr",
]
