"""FO-ANIL and MAML on sinusoid regression with the library API (a few minutes on a laptop CPU).

    .venv/bin/python examples/sinusoid.py [ITERATIONS]

Meta-trains MAML's 2x40 ReLU network on tasks y = A sin(x + φ), then adapts it to new tasks from
K = 10 points and prints the test MSE after 0, 1 and 10 gradient steps, with 95% intervals.
"""

import sys

import torch
from torch import nn

from metarep.fewshot import SinusoidTasks
from metarep.learner import MetaLearner
from metarep.stats import mean_ci

iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
torch.set_num_threads(1)  # small layers: one thread is fastest
tasks = SinusoidTasks()  # amplitude U[0.1, 5], phase U[0, π], x U[-5, 5]
test, _, _ = tasks.sample(600, shots=10, queries=100, generator=torch.Generator().manual_seed(1))

for method in ("fo_anil", "maml"):
    torch.manual_seed(0)
    features = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU())
    head = nn.Linear(40, 1)
    learner = MetaLearner(
        features,
        head,
        method=method,
        inner_lr=0.01,
        inner_steps=1,
        optimizer=torch.optim.Adam,
        outer_lr=3e-3,
        loss="mse",
    )
    # any iterable of batches with a leading task axis: here 25 fresh tasks per outer step
    learner.fit(
        tasks.batches(meta_batch=25, shots=10, queries=10, generator=torch.Generator().manual_seed(2)),
        iterations=iterations,
    )
    scores = learner.evaluate(test, steps=(0, 1, 10))  # vectorised over the 600 test tasks
    print(method, "  ".join(f"{s} step(s): %.3f ± %.3f" % mean_ci(r["loss"]) for s, r in scores.items()))

    # one task by hand: adapt on its 10 points, predict anywhere
    params = learner.adapt(test.X_in[0], test.y_in[0], steps=1)
    x = torch.linspace(-5, 5, 5)[:, None]
    print("   adapted predictions on task 0:", learner.predict(x, params).tolist())
