"""Task pipelines (episodes from any labelled tensors, transforms, fixed test episodes, the conv4
backbone) and the representation diagnostics against direct numpy / scipy computations."""

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image
from torch import nn

from metarep import diagnostics as dg
from metarep.fewshot import ClassImages, EpisodeSampler, conv4, rotate_per_class
from metarep.learner import MetaLearner


def gen(seed):
    return torch.Generator().manual_seed(seed)


def _coded(counts, labels_of=lambda c: c, side=3):
    """Square images whose pixel (0, 0) encodes (class, index); pixel (0, 1) marks the orientation."""
    imgs, labels = [], []
    for c, n in enumerate(counts):
        for i in range(n):
            im = torch.zeros(1, side, side)
            im[0, 0, 0], im[0, 0, 1] = 1000.0 * c + i + 0.5, -1.0
            imgs.append(im)
            labels.append(labels_of(c))
    return torch.stack(imgs), labels


def _check_episodes(b, ways, shots, queries, counts):
    T = b.X_in.shape[0]
    code = lambda X: X.flatten(1).max(-1).values  # noqa: E731  (rotation moves the pixel, max finds it)
    for t in range(T):
        cin, cout = code(b.X_in[t]), code(b.X_out[t])
        assert sorted(b.y_in[t].tolist()) == sorted(list(range(ways)) * shots)
        assert sorted(b.y_out[t].tolist()) == sorted(list(range(ways)) * queries)
        classes = set()
        for lab in range(ways):
            cls = {int(c // 1000) for c in torch.cat([cin[b.y_in[t] == lab], cout[b.y_out[t] == lab]])}
            assert len(cls) == 1  # one class per label, shared by support and query
            classes |= cls
        assert len(classes) == ways  # exactly N classes
        codes = torch.cat([cin, cout]).tolist()
        assert len(set(codes)) == ways * (shots + queries)  # K + Q distinct images each; support ∩ query = ∅
        assert all(c % 1000 < counts[int(c // 1000)] for c in codes)


def test_sampler_from_any_labels_is_n_way_k_shot_and_reproducible():
    counts = [6, 9, 5, 7, 8]
    X, labels = _coded(counts, labels_of=lambda c: f"class-{10 * (5 - c)}")  # strings, in no order
    data = ClassImages.from_tensors(X, labels)
    assert data.class_names == tuple(sorted(set(labels))) and data.counts().tolist() == counts[::-1]
    sampler = EpisodeSampler(data, ways=3, shots=2, queries=3, generator=gen(0))
    _check_episodes(sampler.sample(200), 3, 2, 3, counts)
    # the stream is reproducible by the generator's seed; fixed episodes by their seed alone
    again = EpisodeSampler(data, 3, 2, 3, gen(0))
    assert all(torch.equal(a, b) for a, b in zip(sampler.fixed(50, 7), again.fixed(50, 7)))
    again.sample(13)  # advancing the stream does not change fixed episodes
    assert all(torch.equal(a, b) for a, b in zip(sampler.fixed(50, 7), again.fixed(50, 7)))
    assert not torch.equal(sampler.fixed(50, 7).X_in, sampler.fixed(50, 8).X_in)
    s1, s2 = EpisodeSampler(data, 3, 2, 3, gen(4)), EpisodeSampler(data, 3, 2, 3, gen(4))
    assert all(torch.equal(a, b) for a, b in zip(s1.sample(20), s2.sample(20)))
    # a torch Dataset with integer labels 3, 7, 11 is remapped to 0, 1, 2
    ds = torch.utils.data.TensorDataset(torch.randn(9, 4), torch.tensor([7, 3, 11] * 3))
    d2 = ClassImages.from_dataset(ds)
    assert d2.class_names == ("3", "7", "11") and d2.labels.tolist() == [1, 0, 2] * 3
    b = EpisodeSampler(d2, 2, 1, 2, gen(0)).sample(4)
    assert b.X_in.shape == (4, 2, 4) and b.X_out.shape == (4, 4, 4)
    with pytest.raises(ValueError, match="labels"):
        ClassImages.from_tensors(torch.zeros(3, 2), [0, 1])


def test_per_episode_transform_rotates_each_class_consistently():
    counts = [6] * 6
    X, labels = _coded(counts)
    sampler = EpisodeSampler(ClassImages.from_tensors(X, labels), 4, 2, 2, gen(1), transform=rotate_per_class)
    b = sampler.sample(100)
    _check_episodes(b, 4, 2, 2, counts)

    def turns(img):  # where the (0, 0)/(0, 1) marks went: the number of 90° turns
        return next(r for r in range(4) if torch.rot90(img, -r, dims=(-2, -1))[0, 0, 0] > 0)

    seen = set()
    for t in range(100):
        for lab in range(4):
            r = {turns(im) for im in torch.cat([b.X_in[t][b.y_in[t] == lab], b.X_out[t][b.y_out[t] == lab]])}
            assert len(r) == 1  # one rotation per class of an episode
            seen |= r
    assert seen == {0, 1, 2, 3}
    # fixed (test) episodes are not transformed unless asked
    assert all(turns(im) == 0 for im in sampler.fixed(10, 0).X_in.flatten(0, 1))
    assert {turns(im) for im in sampler.fixed(30, 0, transform=True).X_in.flatten(0, 1)} == {0, 1, 2, 3}


def test_conv4_backbone_shapes_and_meta_gradient_under_vmap():
    for size, width in ((8, 64), (28, 64), (84, 64 * 5 * 5)):
        f, h = conv4(5, 1 if size < 84 else 3, size, seed=0)
        assert len([m for m in f if isinstance(m, nn.Conv2d)]) == 4
        assert len([m for m in f if isinstance(m, nn.BatchNorm2d)]) == 4
        assert f(torch.zeros(2, 1 if size < 84 else 3, size, size)).shape == (2, width) and h.in_features == width
    X, labels = _coded([4] * 5, side=8)
    b = EpisodeSampler(ClassImages.from_tensors(X / 1000, labels), 3, 1, 2, gen(0)).sample(2)
    f, h = conv4(3, 1, 8, channels=8, seed=0)
    g = MetaLearner(f, h, method="maml", inner_lr=0.1, loss="cross_entropy").meta_grad(b)
    assert all(torch.isfinite(v).all() for v in g.values()) and float(g["features.0.weight"].abs().sum()) > 0


# ---------------------------------------------------------------------- diagnostics vs numpy


def _features(seed=0, n=40, h=6):
    rng = np.random.default_rng(seed)
    low = rng.normal(size=(n, 2)) @ rng.normal(size=(2, h)) * 3  # a planted 2-dim subspace
    return low + 0.3 * rng.normal(size=(n, h)) + 5.0  # plus noise and an offset (removed by centring)


def test_diagnostics_equal_direct_numpy():
    phi = _features()
    c = phi - phi.mean(0)
    s = np.linalg.svd(c, compute_uv=False)
    p = s / s.sum()
    assert dg.effective_rank(phi) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-12)
    U = np.linalg.svd(c)[0]
    for k in (0, 1, 2, 4):
        Pk = U[:, :k] @ U[:, :k].T
        direct = np.linalg.norm(c - Pk @ c) ** 2 / np.linalg.norm(c) ** 2  # ‖(I − P_k)Φ‖² / ‖Φ‖²
        assert dg.energy_outside_topk(phi, k) == pytest.approx(direct, rel=1e-10, abs=1e-14)
    # outside a reference span: the least-squares residual of the centred features on the centred reference
    x = np.linspace(-5, 5, 40)
    ref = np.stack([np.sin(x), np.cos(x)], 1)
    rc = ref - ref.mean(0)
    resid = c - rc @ np.linalg.lstsq(rc, c, rcond=None)[0]
    assert dg.energy_outside_span(phi, ref) == pytest.approx((resid**2).sum() / (c**2).sum(), rel=1e-10)
    assert dg.energy_outside_span(rc @ np.ones((2, 3)), ref) == pytest.approx(0.0, abs=1e-20)
    # principal angles: scipy's independent implementation on the top-k left singular vectors
    other = _features(1, h=9)
    for k in (1, 2, 3):
        Ua, Ub = np.linalg.svd(c)[0][:, :k], np.linalg.svd(other - other.mean(0))[0][:, :k]
        want = np.sort(scipy.linalg.subspace_angles(Ua, Ub))
        assert dg.principal_angles(phi, other, k).numpy() == pytest.approx(want, abs=1e-7)
    assert dg.principal_angles(phi, 2 * phi + 1, 2).numpy() == pytest.approx([0.0, 0.0], abs=1e-6)
    head = nn.Linear(6, 3)
    want = math.sqrt((head.weight.detach().double().numpy() ** 2).sum())
    assert dg.head_norm(head) == pytest.approx(want, rel=1e-12) and math.isnan(dg.head_norm(None))
    rows = dg.angles_table({"a": phi, "b": other, "c": phi}, 2)
    assert [(r["a"], r["b"]) for r in rows] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert rows[1]["mean_sin2"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="k"):
        dg.principal_angles(phi, other, 7)


def test_features_of_and_tracking_match_direct_training():
    torch.manual_seed(0)
    feats = nn.Sequential(nn.Linear(1, 8), nn.ReLU())
    X = torch.randn(3, 5, 1)
    learner = MetaLearner(feats, nn.Linear(8, 1), method="fo_anil", inner_lr=0.1)
    # one task at a time against all 15 rows at once: two matmul shapes, whose kernels may round the last
    # bit differently on another CPU; float32 features of O(1) size agree to a few ulps (1e-6 relative)
    torch.testing.assert_close(dg.features_of(learner, X), feats(X.reshape(15, 1)), rtol=1e-6, atol=1e-6)

    def stream(seed):
        g = gen(seed)
        while True:
            Xs = torch.randn(4, 6, 1, generator=g)
            y = torch.sin(Xs[..., 0] + torch.rand(4, 1, generator=g))
            yield (Xs[:, :3], y[:, :3], Xs[:, 3:], y[:, 3:])

    def fresh():
        torch.manual_seed(1)
        return MetaLearner(nn.Sequential(nn.Linear(1, 8), nn.ReLU()), nn.Linear(8, 1), method="fo_anil", inner_lr=0.1)

    a, b = fresh(), fresh()
    a.fit(stream(0), iterations=7, progress=False)
    rows = dg.fit_tracked(b, stream(0), 7, 3, dg.Probe(X, k=2))
    assert [r["step"] for r in rows] == [0, 3, 6, 7]
    assert all(torch.equal(p, q) for p, q in zip(a.model_.parameters(), b.model_.parameters()))
    assert rows[-1]["effective_rank"] == pytest.approx(dg.effective_rank(dg.features_of(b, X)))
    assert rows[-1]["head_norm"] == pytest.approx(float(b.head.weight.detach().norm()), rel=1e-6)
    assert math.isnan(rows[0]["energy_outside_reference"])
    # a list of batches is consumed once, in order, as fit would
    c, d = fresh(), fresh()
    batches = [next(s) for s in [stream(3)] for _ in range(5)]
    c.fit(iter(batches), iterations=5, progress=False)
    dg.fit_tracked(d, batches, 5, 2, dg.Probe(X, k=2))
    assert all(torch.equal(p, q) for p, q in zip(c.model_.parameters(), d.model_.parameters()))
    # ProtoNets build their head from each episode's support set: their own head is not a learned head
    proto = MetaLearner(
        nn.Sequential(nn.Linear(1, 8), nn.ReLU()), nn.Linear(8, 3), method="protonet", loss="cross_entropy"
    )
    assert math.isnan(dg.measure(proto, X, 2)["head_norm"])
    assert dg.measure(proto, X, 2, head=proto.head)["head_norm"] == pytest.approx(dg.head_norm(proto.head))


# ---------------------------------------------------------------------- the commands and the experiment


def _colour_folder(root, classes, per_class=4, size=10):
    rng = np.random.default_rng(len(str(root)))
    for c in range(classes):
        d = root / f"n{c:03d}"
        d.mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 40, size=(size, size, 3)).astype(np.uint8)
            arr[..., c % 3] += np.uint8(150)  # a class-dependent colour
            Image.fromarray(arr, "RGB").save(d / f"{i}.jpg")


@pytest.mark.slow
def test_cli_diagnostics_and_a_separate_colour_test_folder(tmp_path):
    from typer.testing import CliRunner

    from metarep.cli import app

    small = ["--iterations", "4", "--test-tasks", "10", "--steps", "1", "--channels", "4", "--meta-batch", "2"]
    out = tmp_path / "d"
    res = CliRunner().invoke(
        app, ["fewshot", "digits", *small, "--methods", "fo_anil", "--diagnostics", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "effective rank" in res.output and "diagnostics.png" in res.output
    rows = list(csv.DictReader((out / "diagnostics.csv").open()))
    assert {r["method"] for r in rows} == {"pretrain", "fo_anil"}
    assert sorted({int(r["step"]) for r in rows}) == [0, 1, 2, 3, 4]  # every step: 4 // 25 -> 1
    assert {r["metric"] for r in rows} == set(dg.METRICS)
    angles = list(csv.DictReader((out / "angles.csv").open()))
    assert [(a["a"], a["b"]) for a in angles] == [("pretrain", "fo_anil")] and 0 <= float(angles[0]["mean_sin2"]) <= 1
    assert (out / "diagnostics.png").stat().st_size > 10_000

    _colour_folder(tmp_path / "train", classes=4)
    _colour_folder(tmp_path / "test", classes=3)
    out = tmp_path / "i"
    args = ["fewshot", "images", str(tmp_path / "train"), "--test-root", str(tmp_path / "test"), "--color"]
    args += ["--backbone", "conv4", "--size", "8", "--ways", "3", "--queries", "2", *small, "--methods", "anil"]
    res = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    j = json.loads((out / "results.json").read_text())
    assert j["train_classes"] == ["n000", "n001", "n002", "n003"] and j["test_classes"] == ["n000", "n001", "n002"]
    assert j["config"]["backbone"] == "conv4"
    res = CliRunner().invoke(app, [*args, "--backbone", "vgg", "--out", str(out)])
    assert res.exit_code == 2 and res.output.strip().splitlines()[-1].startswith("error: --backbone")


@pytest.mark.slow
def test_fewshot_experiment_tiny_and_reused(tmp_path, monkeypatch):
    from metarep.experiments import QUICK, reproduce
    from metarep.experiments.framework import FewshotScale
    from metarep.fewshot import representations

    tiny = dataclasses.replace(
        QUICK,
        fewshot=FewshotScale(
            sinusoid_steps=4, digits_steps=2, points=2, test_tasks=20, channels=4, meta_batch=2, inner_steps=1
        ),
    )
    out = tmp_path / "rep"
    reproduce(["fewshot"], seeds=2, out=out, scale=tiny, progress=False)
    report = (out / "REPORT.md").read_text()
    assert "![fewshot](fewshot.png)" in report and "outside span{sin,cos}" in report
    assert (out / "fewshot.png").stat().st_size > 20_000
    rows = list(csv.DictReader((out / "fewshot.csv").open()))
    labels = {r["label"] for r in rows}
    want_labels = {f"sinusoid:{m}" for m in representations.SINUSOID_METHODS}
    assert want_labels | {f"digits:{m}" for m in representations.DIGIT_METHODS} == labels
    assert "digits:protonet" in labels and "sinusoid:protonet" not in labels
    assert all(r["seeds"] == "2" for r in rows)
    # the tracked curve of a method is the mean over the two seeds' files
    files = sorted((out / "fewshot").glob("*.json"))
    assert len(files) == 2
    per_seed = [json.loads(f.read_text()) for f in files]
    want = np.mean([s["sinusoid"]["tracked"]["fo_anil"][-1]["effective_rank"] for s in per_seed])
    got = next(
        r for r in rows if r["label"] == "sinusoid:fo_anil" and r["metric"] == "effective_rank" and r["x"] == "4.0"
    )
    assert float(got["mean"]) == pytest.approx(want, rel=1e-9)
    # a second call reuses the measurements
    monkeypatch.setattr(representations, "measure", lambda *a: pytest.fail("measured again"))
    reproduce(["fewshot"], seeds=2, out=out, scale=tiny, progress=False)
