"""Few-shot benchmarks: sinusoid tasks, episodes, the digits split, the image-folder loader, and
`metarep fewshot` end to end with tiny settings (outputs, and one-line errors with exit code 2)."""

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from conftest import gen
from PIL import Image
from typer.testing import CliRunner

from metarep.cli import app
from metarep.fewshot import ClassImages, EpisodeSampler, SinusoidTasks, load_digits, load_image_folder
from metarep.fewshot.backbones import conv_net
from metarep.fewshot.digits import FewShotConfig, run_fewshot, split_by_class
from metarep.fewshot.images import rotate_classes
from metarep.fewshot.sinusoid import SinusoidConfig, make_learner, run_sinusoid, sinusoid_net
from metarep.runtime import torch_threads


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def test_sinusoid_tasks_follow_the_benchmark():
    tasks = SinusoidTasks()
    batch, amp, phase = tasks.sample(500, 10, 7, gen(0))
    assert batch.X_in.shape == (500, 10, 1) and batch.y_in.shape == (500, 10) and batch.X_out.shape == (500, 7, 1)
    assert (
        float(amp.min()) >= 0.1 and float(amp.max()) <= 5 and float(phase.min()) >= 0 and float(phase.max()) <= math.pi
    )
    X = torch.cat([batch.X_in, batch.X_out], 1)
    assert float(X.min()) >= -5 and float(X.max()) <= 5 and float(X.max()) > 4.9
    y = torch.cat([batch.y_in, batch.y_out], 1)
    assert torch.allclose(y, amp[:, None] * torch.sin(X[..., 0] + phase[:, None]))
    again, _, _ = tasks.sample(500, 10, 7, gen(0))
    assert torch.equal(again.X_in, batch.X_in)  # seeded


def test_sinusoid_meta_learning_beats_pretraining_after_one_step():
    """A short, seeded MAML run already adapts in one step much better than the pretrained net."""
    cfg = SinusoidConfig(
        shots=(10,),
        methods=("maml",),
        iterations=60,
        meta_batch=10,
        inner_lr=0.05,
        outer_lr=0.01,
        test_tasks=200,
        test_queries=20,
        eval_steps=(0, 1),
    )
    res = run_sinusoid(cfg, progress=False, plot_tasks=1)
    mse = {(r["method"], r["steps"]): (r["mse"], r["ci95"]) for r in res.rows}
    assert mse[("maml", 1)][0] < 0.85 * mse[("maml", 0)][0]
    assert mse[("maml", 1)][0] < mse[("pretrain", 1)][0]
    assert set(res.curves[10]["pred"]) == {"pretrain", "maml"} and len(res.curves[10]["pred"]["maml"][0][1]) == 200
    # every method starts from the same initialisation
    a, b = make_learner("fo_anil", cfg, 5), make_learner("reptile", cfg, 5)
    assert all(torch.equal(p, q) for p, q in zip(a.features.parameters(), b.features.parameters()))
    assert b.inner_steps == cfg.reptile_inner_steps


def _coded_images(counts):
    """One 2×3 image per sample whose pixels encode (class, index) so episodes can be checked."""
    imgs, labels = [], []
    for c, n in enumerate(counts):
        for i in range(n):
            imgs.append(torch.full((1, 2, 3), 1000.0 * c + i))
            labels.append(c)
    return ClassImages(torch.stack(imgs), torch.tensor(labels), tuple(f"c{c}" for c in range(len(counts))))


def test_episodes_are_n_way_k_shot_with_fresh_labels():
    data = _coded_images([7, 9, 6, 12, 8, 6])
    sampler = EpisodeSampler(data, ways=4, shots=2, queries=3, generator=gen(0))
    b = sampler.sample(300)
    assert b.X_in.shape == (300, 8, 1, 2, 3) and b.X_out.shape == (300, 12, 1, 2, 3)
    assert b.y_in.dtype == torch.long
    for t in range(300):
        codes_in, codes_out = b.X_in[t, :, 0, 0, 0], b.X_out[t, :, 0, 0, 0]
        cls_in, cls_out = (codes_in // 1000).long(), (codes_out // 1000).long()
        # one class per label, consistent between support and query; images never repeat
        for lab in range(4):
            assert (b.y_in[t] == lab).sum() == 2 and (b.y_out[t] == lab).sum() == 3
            assert len(set(cls_in[b.y_in[t] == lab].tolist()) | set(cls_out[b.y_out[t] == lab].tolist())) == 1
        assert len(set(cls_in.tolist())) == 4
        all_codes = torch.cat([codes_in, codes_out]).tolist()
        assert len(set(all_codes)) == len(all_codes)
        assert all((c % 1000) < data.counts()[int(c // 1000)] for c in all_codes)  # no padding drawn
    # labels are a fresh permutation: class 0 gets every label over many episodes
    first = (b.X_in[:, :, 0, 0, 0] // 1000).long()
    assert {int(b.y_in[t][first[t] == 0][0]) for t in range(300) if (first[t] == 0).any()} == {0, 1, 2, 3}


def test_episode_sampler_errors():
    data = _coded_images([3, 5, 5])
    with pytest.raises(ValueError, match="ways"):
        EpisodeSampler(data, 4, 1, 1, gen(0))
    with pytest.raises(ValueError, match="'c0' has 3"):
        EpisodeSampler(data, 2, 2, 2, gen(0))


def test_digits_split_is_disjoint_with_rotated_classes():
    data = load_digits()
    assert data.images.shape == (1797, 1, 8, 8) and float(data.images.max()) == 1.0 and data.num_classes == 10
    train, test = split_by_class(data, ("5", "6", "7", "8", "9"), rotations=4)
    assert train.num_classes == test.num_classes == 20
    assert not set(train.class_names) & set(test.class_names)
    assert {n.split("@")[0] for n in test.class_names} == {"5", "6", "7", "8", "9"}
    assert len(train.labels) + len(test.labels) == 4 * 1797
    # a rotated class holds the rotated images
    rot = rotate_classes(data.subset([3]), 4)
    assert torch.equal(rot.images[rot.labels == 1], torch.rot90(data.images[data.labels == 3], 1, dims=(-2, -1)))
    with pytest.raises(ValueError, match="--test-classes"):
        split_by_class(data, ("12",), 1)


def test_conv_net_shapes():
    for size, width in ((8, 32 * 2 * 2), (28, 32 * 3 * 3)):
        f, h = conv_net(5, 1, size, 32, seed=0)
        assert f(torch.zeros(2, 1, size, size)).shape == (2, width) and h.in_features == width and h.out_features == 5


def _write_folder(root, classes=5, per_class=4, size=12, nested=True):
    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / (f"alphabet{c % 2}/char{c:02d}" if nested else f"class{c}")
        d.mkdir(parents=True)
        for i in range(per_class):
            arr = np.full((size, size), 255, np.uint8)
            arr[c : c + 3, :] = rng.integers(0, 60, size=(3, size))  # a dark stroke at a class-dependent row
            Image.fromarray(arr).save(d / f"{i}.png")
    (root / "README.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / ".hidden" / "x.png")


def test_image_folder_loader(tmp_path):
    _write_folder(tmp_path)
    data = load_image_folder(tmp_path, size=8)
    assert data.images.shape == (20, 1, 8, 8) and data.images.dtype == torch.float32
    assert data.class_names == (
        "alphabet0/char00",
        "alphabet0/char02",
        "alphabet0/char04",
        "alphabet1/char01",
        "alphabet1/char03",
    )
    assert data.counts().tolist() == [4] * 5
    assert float(data.images.min()) >= 0.0 and float(data.images.max()) == pytest.approx(1.0)
    inv = load_image_folder(tmp_path, size=(8, 6), invert=True)
    assert inv.images.shape == (20, 1, 8, 6) and float(inv.images.mean()) < 0.5 < float(data.images.mean())


def test_image_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        load_image_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class folders"):
        load_image_folder(tmp_path)
    _write_folder(tmp_path / "a", classes=2)
    with pytest.raises(ValueError, match="at least 9"):
        load_image_folder(tmp_path / "a", min_images=9)
    (tmp_path / "a" / "alphabet0" / "char00" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png"):
        load_image_folder(tmp_path / "a")


def test_fewshot_classification_end_to_end_small():
    data = _coded_images([8] * 6)
    data = ClassImages(torch.rand(48, 1, 8, 8, generator=gen(0)), data.labels, data.class_names)
    train, test = data.subset([0, 1, 2, 3]), data.subset([4, 5])
    cfg = FewShotConfig(
        ways=2,
        shots=1,
        queries=2,
        methods=("fo_anil", "maml"),
        iterations=3,
        meta_batch=2,
        inner_steps=1,
        eval_steps=(0, 1),
        test_tasks=8,
        channels=4,
    )
    res = run_fewshot(train, test, cfg, progress=False)
    assert {(r["method"], r["steps"]) for r in res.rows} == {
        (m, s) for m in ("pretrain", "fo_anil", "maml") for s in (0, 1)
    }
    assert all(0 <= r["accuracy"] <= 1 and r["ci95"] >= 0 for r in res.rows)
    assert len(res.history["fo_anil"]) == 3 and len(res.history["pretrain"]) == 3


# --------------------------------------------------------------------------- CLI


def invoke(*args):
    return CliRunner().invoke(app, ["fewshot", *args])


@pytest.mark.slow
def test_cli_sinusoid_writes_outputs(tmp_path):
    out = tmp_path / "s"
    res = invoke(
        "sinusoid",
        "--shots",
        "5",
        "--methods",
        "fo_anil,reptile",
        "--iterations",
        "3",
        "--test-tasks",
        "12",
        "--test-queries",
        "5",
        "--steps",
        "0,1,2",
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    assert "FO-ANIL" in res.output and "pretrained baseline" in res.output and "±" in res.output
    for name in ("results.json", "results.csv", "mse.png", "curves_K5.png"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["config"]["shots"] == [5] and summary["config"]["iterations"] == 3 and "versions" in summary
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 3 * 3 and {r["method"] for r in rows} == {"pretrain", "fo_anil", "reptile"}
    assert all(float(r["mse"]) > 0 for r in rows)


@pytest.mark.slow
def test_cli_digits_and_images(tmp_path):
    out = tmp_path / "d"
    res = invoke(
        "digits",
        "--iterations",
        "2",
        "--test-tasks",
        "10",
        "--methods",
        "fo_anil",
        "--steps",
        "1",
        "--channels",
        "4",
        "--meta-batch",
        "2",
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    assert "5-way 1-shot" in res.output and "20 meta-train / 20 meta-test" in res.output
    for name in ("results.json", "results.csv", "accuracy.png"):
        assert (out / name).stat().st_size > 0
    j = json.loads((out / "results.json").read_text())
    assert len(j["results"]) == 2 and not set(j["train_classes"]) & set(j["test_classes"])

    _write_folder(tmp_path / "imgs", classes=6, per_class=4)
    out = tmp_path / "i"
    res = invoke(
        "images",
        str(tmp_path / "imgs"),
        "--size",
        "8",
        "--invert",
        "--ways",
        "2",
        "--shots",
        "1",
        "--queries",
        "2",
        "--iterations",
        "2",
        "--test-tasks",
        "5",
        "--channels",
        "4",
        "--methods",
        "anil",
        "--test-fraction",
        "0.34",
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    j = json.loads((out / "results.json").read_text())
    assert len(j["test_classes"]) == 2 and len(j["train_classes"]) == 4 and j["benchmark"] == "images"


@pytest.mark.parametrize(
    "args, key",
    [
        (["sinusoid", "--shots", "0"], "--shots"),
        (["sinusoid", "--shots", "five"], "--shots"),
        (["sinusoid", "--methods", "sgd"], "--methods"),
        (["sinusoid", "--steps", "-1"], "--steps"),
        (["sinusoid", "--inner-lr", "0"], "--inner-lr"),
        (["sinusoid", "--test-tasks", "1"], "--test-tasks"),
        (["sinusoid", "--methods", "protonet"], "--methods"),
        (["sinusoid", "--preset", "reptile"], "--preset"),
        (["sinusoid", "--inner-optimizer", "lbfgs"], "--inner-optimizer"),
        (["sinusoid", "--init", "xavier"], "--init"),
        (["digits", "--ways", "30"], "--ways"),
        (["digits", "--test-digits", "11"], "--test-digits"),
        (["digits", "--rotations", "5"], "--rotations"),
        (["digits", "--methods", "fo_anil,pretrain"], "--methods"),
        (["images", "/nonexistent/folder"], "image folder"),
        (["images", ".", "--test-fraction", "1.5"], "--test-fraction"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, key, tmp_path):
    res = invoke(*args, "--out", str(tmp_path / "o"))
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], res.output
    assert "Traceback" not in res.output


def test_sinusoid_batches_need_no_generator():
    a, b = SinusoidTasks().batches(4, 5, 5), SinusoidTasks().batches(4, 5, 5)
    first, second = next(a), next(a)
    assert all(torch.equal(x, y) for x, y in zip(first, next(b)))  # seeded default: reproducible
    assert not torch.equal(first.y_in, second.y_in)  # and a stream of new tasks
    assert first.X_in.shape == (4, 5, 1) and first.y_out.shape == (4, 5)


def test_maml_init_and_preset(tmp_path):
    """The official code's initialisation: weights N(0, 0.01²) truncated at 2 std, zero biases; the preset
    sets its protocol and options given on the command line win."""
    features, head = sinusoid_net(seed=0, init="maml")
    weights = torch.cat([m.weight.detach().flatten() for m in [*features, head] if isinstance(m, torch.nn.Linear)])
    assert float(weights.abs().max()) <= 0.02 and 0.007 < float(weights.std()) < 0.01  # truncation shrinks std
    assert all(float(m.bias.detach().abs().max()) == 0 for m in [*features, head] if isinstance(m, torch.nn.Linear))
    out = tmp_path / "p"
    args = ["--preset", "maml", "--iterations", "2", "--test-tasks", "10", "--shots", "5", "--methods", "maml"]
    res = invoke("sinusoid", *args, "--steps", "0,1", "--out", str(out))
    assert res.exit_code == 0, res.output
    cfg = json.loads((out / "results.json").read_text())["config"]
    assert (cfg["iterations"], cfg["outer_lr"], cfg["init"], cfg["test_queries"]) == (2, 1e-3, "maml", None)
    assert (cfg["meta_batch"], cfg["inner_lr"], cfg["inner_steps"]) == (25, 0.01, 1)
    assert "preset maml" in res.output


def test_mse_figure_labels_the_shared_y_axis_once(monkeypatch, tmp_path):
    import metarep.plots
    from metarep.fewshot.sinusoid import SinusoidResult
    from metarep.fewshot.sinusoid_plots import plot_mse

    figs = []
    monkeypatch.setattr(metarep.plots, "save_figure", lambda fig, path: figs.append(fig))
    cfg = SinusoidConfig(shots=(5, 10), methods=("maml",), eval_steps=(0, 1))
    rows = [
        {"shots": K, "method": m, "steps": s, "mse": 1.0 + s, "ci95": 0.1, "diverged": 0}
        for K in (5, 10)
        for m in ("pretrain", "maml")
        for s in (0, 1)
    ]
    curves = {K: {"pred": {"pretrain": [], "maml": []}} for K in (5, 10)}
    plot_mse(SinusoidResult(cfg, rows, curves), tmp_path / "mse.png")
    left, right = figs[0].axes
    assert left.get_ylabel() and not right.get_ylabel()  # no label to collide with the next panel
    assert right.get_shared_y_axes().joined(left, right)


def test_sinusoid_diagnostics_track_the_same_training(tmp_path):
    """--diagnostics measures the features on the probe without changing the training: the scores equal a
    run without it; the energy outside span{sin, cos} equals a direct least-squares residual; the angles
    include the true span."""
    from metarep.diagnostics import features_of
    from metarep.fewshot.sinusoid import SPAN, sinusoid_probe, sinusoid_reference

    cfg = SinusoidConfig(shots=(5,), methods=("fo_anil",), iterations=6, test_tasks=12, eval_steps=(0, 1))
    plain = run_sinusoid(cfg, plot_tasks=0)
    tracked = run_sinusoid(dataclasses.replace(cfg, diagnostics_every=4), plot_tasks=0)
    assert plain.rows == tracked.rows  # same training, same test scores
    rows = tracked.diagnostics[5]["fo_anil"]
    assert [r["step"] for r in rows] == [0, 4, 6]
    # the last row equals a direct computation on the final features
    learner = make_learner("fo_anil", cfg, tracked.seeds["init"])
    stream = SinusoidTasks().batches(cfg.meta_batch, 5, 5, torch.Generator().manual_seed(tracked.seeds["train"] + 5))
    learner.fit(stream, iterations=6, progress=False)
    probe = sinusoid_probe(SinusoidTasks())
    phi = features_of(learner, probe.X).double()
    phi = phi - phi.mean(0)
    ref = sinusoid_reference(probe.X[0, :, 0]).double()
    ref = ref - ref.mean(0)
    resid = phi - ref @ torch.linalg.lstsq(ref, phi).solution
    assert rows[-1]["energy_outside_reference"] == pytest.approx(float((resid**2).sum() / (phi**2).sum()), rel=1e-4)
    pairs = {(a["a"], a["b"]) for a in tracked.angles[5]}
    assert pairs == {("pretrain", "fo_anil"), ("pretrain", SPAN), ("fo_anil", SPAN)}


@pytest.mark.slow
def test_cli_sinusoid_diagnostics_writes_per_shot_folders(tmp_path):
    out = tmp_path / "s"
    res = invoke(
        "sinusoid", "--shots", "5,10", "--methods", "anil", "--iterations", "4", "--test-tasks", "12",
        "--steps", "1", "--diagnostics", "--out", str(out),
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "energy outside the task span" in res.output and "diagnostics_K10/" in res.output
    for K in (5, 10):
        for name in ("diagnostics.csv", "angles.csv", "diagnostics.png"):
            assert (out / f"diagnostics_K{K}" / name).stat().st_size > 0
        rows = list(csv.DictReader((out / f"diagnostics_K{K}" / "diagnostics.csv").open()))
        assert {r["method"] for r in rows} == {"pretrain", "anil"}
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["diagnostics"]) == {"5", "10"} and summary["config"]["diagnostics_every"] == 1
