"""Few-shot benchmarks for :class:`metarep.learner.MetaLearner`: sinusoid regression (the classic
MAML benchmark), few-shot classification of scikit-learn's 8×8 digits, and a loader for an
Omniglot-style folder of images (one folder per class); N-way K-shot episodes from any labelled
tensors (:mod:`.episodes`) and the usual convolutional backbones (:mod:`.backbones`).

Every task source yields :class:`metarep.batch.TaskBatch` tensors with a leading task axis.
"""

from ._util import tune_inner_lr
from .backbones import conv4
from .episodes import EpisodeSampler, rotate_per_class
from .images import ClassImages, load_digits, load_image_folder, rotate_classes
from .sinusoid import SinusoidTasks, sinusoid_net

__all__ = [
    "ClassImages",
    "EpisodeSampler",
    "SinusoidTasks",
    "conv4",
    "load_digits",
    "load_image_folder",
    "rotate_classes",
    "rotate_per_class",
    "sinusoid_net",
    "tune_inner_lr",
]
