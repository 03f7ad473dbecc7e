"""5-way 1-shot classification of unseen digit classes with FO-ANIL, using the library API.

    .venv/bin/python examples/digits.py [ITERATIONS]

Meta-trains a small CNN on episodes of digits 0-4 (and their 90° rotations, each a class), then
scores it on 600 episodes of digits 5-9 (and their rotations), never seen in training.
"""

import sys

import torch

from metarep.fewshot import EpisodeSampler, load_digits
from metarep.fewshot.backbones import conv_net
from metarep.fewshot.digits import split_by_class
from metarep.learner import MetaLearner
from metarep.stats import mean_ci

iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 500
torch.set_num_threads(1)
train, test = split_by_class(load_digits(), test_classes=("5", "6", "7", "8", "9"), rotations=4)
print(f"{train.num_classes} meta-train classes, {test.num_classes} meta-test classes")

features, head = conv_net(ways=5, in_channels=1, image_size=8, channels=32, seed=0)  # head: nn.Linear(128, 5)
learner = MetaLearner(
    features, head, method="fo_anil", inner_lr=0.5, inner_steps=5, outer_lr=3e-3, loss="cross_entropy"
)
episodes = EpisodeSampler(train, ways=5, shots=1, queries=5, generator=torch.Generator().manual_seed(0))
learner.fit(episodes.batches(meta_batch=16), iterations=iterations)

test_episodes = EpisodeSampler(test, ways=5, shots=1, queries=5, generator=torch.Generator().manual_seed(1)).sample(600)
for s, r in learner.evaluate(test_episodes, steps=(1, 5, 10)).items():
    m, h = mean_ci(r["accuracy"])
    print(f"FO-ANIL, {s:2d} inner steps: accuracy {100 * m:.1f} ± {100 * h:.1f}%")
