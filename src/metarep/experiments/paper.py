"""The seven experiments of the reproduction, each a declared :class:`Experiment`.

Every ``present_*`` function receives ``res``: ``{label: [record per seed]}``, a record being
``{"history": [rows], "summary": {...}, "evaluation": {...} | None}``, and the :class:`Scale`.
"""

from __future__ import annotations

import numpy as np

from .catalog import (
    Experiment,
    Presentation,
    Scale,
    Series,
    fmt,
    infinite,
    limit_risk,
    md_table,
    method_series,
    paper,
    predicted_eigs,
    predicted_rate,
)

K = 5
BAND = 0.2  # alpha of the shaded spread over seeds


# --------------------------------------------------------------------------------------------
# aggregation helpers


def curve(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean and standard deviation over seeds of history column ``key``."""
    n = min(len(r["history"]) for r in records)
    steps = np.array([row["step"] for row in records[0]["history"][:n]])
    vals = np.array([[row[key] for row in r["history"][:n]] for r in records])
    return steps, vals.mean(0), vals.std(0)


def final(records: list[dict], key: str) -> tuple[float, float]:
    """Mean and standard deviation over seeds of a final summary value (scalar)."""
    v = np.array([r["summary"][key] for r in records], dtype=float)
    return float(v.mean()), float(v.std())


def final_vec(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    v = np.array([r["summary"][key] for r in records], dtype=float)
    return v.mean(0), v.std(0)


def risk(records: list[dict], estimator: str, source: str = "auto") -> tuple[list[int], np.ndarray, np.ndarray]:
    """m, mean and spread over seeds of one estimator's excess risk.

    ``source``: ``closed_form``, ``mc_mean``, or ``auto`` (closed form where it exists, else MC).
    """
    ev = [r["evaluation"] for r in records]
    ms = ev[0]["m_test"]
    vals = []
    for e in ev:
        est = e["estimators"][estimator]
        row = []
        for i in range(len(ms)):
            cf, mc = est["closed_form"][i], est["mc_mean"][i]
            v = cf if (source == "closed_form" or (source == "auto" and cf is not None)) else mc
            row.append(np.nan if v is None else v)
        vals.append(row)
    a = np.array(vals, dtype=float)
    return ms, a.mean(0), a.std(0)


def band(ax, x, mean, std, **kw):
    line = ax.plot(x, mean, **kw)[0]
    ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=BAND, lw=0)
    return line


def tidy(experiment: str, label: str, x_name: str, x, metric: str, mean, std, n: int, predicted=None) -> list[dict]:
    xs = np.atleast_1d(x)
    means, stds = np.atleast_1d(mean), np.atleast_1d(std)
    preds = np.atleast_1d(predicted) if predicted is not None else [None] * len(xs)
    return [
        {
            "experiment": experiment,
            "label": label,
            x_name if x_name else "x": float(a),
            "metric": metric,
            "mean": float(m),
            "std": float(s),
            "seeds": n,
            "predicted": "" if p is None else float(p),
        }
        for a, m, s, p in zip(xs, means, stds, preds)
    ]


def _rows_with_x(rows: list[dict]) -> list[dict]:
    """Put every tidy row's x under one column name ``x`` with ``x_name`` beside it."""
    out = []
    for r in rows:
        r = dict(r)
        x_name = next(k for k in r if k not in ("experiment", "label", "metric", "mean", "std", "seeds", "predicted"))
        out.append(
            {
                "experiment": r["experiment"],
                "label": r["label"],
                "x_name": x_name,
                "x": r[x_name],
                "metric": r["metric"],
                "mean": r["mean"],
                "std": r["std"],
                "seeds": r["seeds"],
                "predicted": r["predicted"],
            }
        )
    return out


# --------------------------------------------------------------------------------------------
# learning


def learning_series(s: Scale) -> list[Series]:
    return [Series(f"finite N={s.tasks}", paper(s), evaluate=True), Series("infinite", infinite(s))]


def present_learning(res: dict, s: Scale) -> Presentation:
    pred = predicted_eigs(width=s.d)
    rows, table = [], []
    for label, recs in res.items():
        mean, std = final_vec(recs, "signal_eigs")
        rel = np.abs(mean - pred) / pred
        table.append(
            [
                label,
                ", ".join(f"{m:.4g} ± {sd:.2g}" for m, sd in zip(mean, std)),
                ", ".join(f"{p:.4g}" for p in pred),
                f"{rel.max():.2e}",
            ]
        )
        for j in range(K):
            st, mu, sd = curve(recs, f"signal_eig_{j + 1}")
            rows += tidy("learning", label, "step", st, f"signal_eig_{j + 1}", mu, sd, len(recs), [pred[j]] * len(st))

    def draw(fig):
        axes = fig.subplots(1, len(res), squeeze=False)[0]
        for ax, (label, recs) in zip(axes, res.items()):
            colors = [f"C{j}" for j in range(K)]
            for j in range(K):
                st, mu, sd = curve(recs, f"signal_eig_{j + 1}")
                band(ax, st, mu, sd, color=colors[j], lw=1.5, label=f"λ{j + 1}")
                ax.axhline(pred[j], color=colors[j], ls="--", lw=1)
            ax.set_xscale("symlog", linthresh=max(st[1], 1))
            ax.set_xlim(left=0)
            ax.set_title(f"{label} (dashed: predicted limit γ_j/α)")
            ax.set_xlabel("step")
            ax.set_ylabel(r"eigenvalues of $B_*^\top BB^\top B_*$")

    inf_rel = float((np.abs(final_vec(res["infinite"], "signal_eigs")[0] - pred) / pred).max())
    fin_label = next(k for k in res if k.startswith("finite"))
    fin_rel = float((np.abs(final_vec(res[fin_label], "signal_eigs")[0] - pred) / pred).max())
    md = md_table(
        ["series", "measured signal eigenvalues (mean ± sd over seeds)", "predicted", "max rel. error"], table
    )
    md += (
        f"\n\nInfinite tasks: the eigenvalues reach the predicted limit (max relative error {inf_rel:.1e}). "
        f"Finite pool of {s.tasks} tasks: within {fin_rel:.0%}, the gap being the pool's own estimate of Σ* "
        "and its noise, which the infinite-task theory does not model."
    )
    return Presentation(draw, rows, md)


# --------------------------------------------------------------------------------------------
# unlearning


HUGE_M_IN = 10**9


def unlearning_series(s: Scale) -> list[Series]:
    return [
        Series("infinite m_in=10", infinite(s, "data.m_in=10")),
        Series("infinite m_in=20", infinite(s)),
        Series("infinite m_in=1e9", infinite(s, f"data.m_in={HUGE_M_IN}")),
        Series(f"finite N={s.tasks}", paper(s), evaluate=True),  # the same runs as "learning" and "methods"
        Series(
            f"multitask N={s.tasks}", paper(s, "method.name=multitask", f"run.steps={s.multitask_steps}"), evaluate=True
        ),
    ]


def present_unlearning(res: dict, s: Scale) -> Presentation:
    rows, table = [], []
    preds = {"infinite m_in=10": predicted_rate(10), "infinite m_in=20": predicted_rate(20)}
    for label, recs in res.items():
        st, mu, sd = curve(recs, "perp_norm2")
        rows += tidy("unlearning", label, "step", st, "perp_norm2", mu, sd, len(recs))
        st, rel, rsd = curve(recs, "perp_rel")
        rows += tidy("unlearning", label, "step", st, "perp_rel", rel, rsd, len(recs))
        rate, rate_sd = final(recs, "perp_rate")
        p = preds.get(label)
        table.append(
            [
                label,
                fmt(final(recs, "perp_norm2")[0]),
                fmt(final(recs, "perp_rel")[0]),
                f"{rate:.4g} ± {rate_sd:.2g}",
                fmt(p) if p else "–",
                f"{rate / p - 1:+.1%}" if p else "–",
            ]
        )

    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2)
        for i, (label, recs) in enumerate(res.items()):
            st, mu, sd = curve(recs, "perp_norm2")
            keep = st > 0
            if not label.startswith("multitask"):
                band(ax1, st[keep], mu[keep], sd[keep], color=f"C{i}", label=label, lw=1.5)
                if label in preds:
                    ax1.plot(st[keep], preds[label] / st[keep], color=f"C{i}", ls="--", lw=1)
            st, mu, sd = curve(recs, "perp_rel")
            band(ax2, st[st > 0], mu[st > 0], sd[st > 0], color=f"C{i}", label=label, lw=1.5)
        ax1.set_xscale("log"), ax1.set_yscale("log")
        ax1.set_title(r"$\|B_\perp^\top B_t\|_2^2$ (dashed: predicted $C/t$)")
        ax2.set_xscale("log"), ax2.set_yscale("log")
        ax2.set_title(r"relative: $\|B_\perp^\top B\|_2^2 / \|B_*^\top B\|_2^2$ (scale-free, incl. multitask)")
        for ax in (ax1, ax2):
            ax.set_xlabel("step")
            ax.legend(fontsize=7)

    md = md_table(["series", "final ‖B⊥ᵀB‖₂²", "relative to signal", "t·‖B⊥ᵀB‖₂² (final)", "predicted C", "gap"], table)
    md += (
        "\n\nIn the infinite regime the energy outside span(B*) decays like C/t with the predicted C; with "
        "m_in = 1e9 (b ≈ 0) it stalls: nothing outside the learned rows is unlearned. A finite pool stalls at a "
        "floor set by N (the theory's 1/t law is for infinitely many tasks), and multi-task learning keeps "
        "its extra directions: its relative energy outside span(B*) stays far above FO-ANIL's."
    )
    return Presentation(draw, rows, md)


# --------------------------------------------------------------------------------------------
# methods


def present_methods(res: dict, s: Scale) -> Presentation:
    rows, table = [], []
    for label, recs in res.items():
        eig = final_vec(recs, "signal_eigs")[0]
        table.append(
            [
                label,
                ", ".join(f"{x:.3g}" for x in eig),
                fmt(final(recs, "perp_norm2")[0]),
                fmt(final(recs, "perp_rel")[0]),
                fmt(final(recs, "subspace_sin")[0]),
                fmt(final(recs, "effective_rank")[0]),
                str(recs[0]["summary"]["steps"]),
            ]
        )
        for key in ("subspace_sin", "perp_rel"):
            st, mu, sd = curve(recs, key)
            rows += tidy("methods", label, "step", st, key, mu, sd, len(recs))

    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2)
        for i, (label, recs) in enumerate(res.items()):
            for ax, key in ((ax1, "subspace_sin"), (ax2, "perp_rel")):
                st, mu, sd = curve(recs, key)
                if len(st) > 2:
                    band(ax, st, mu, sd, color=f"C{i}", label=label, lw=1.5)
                else:  # one-shot estimators: their final value as a horizontal line
                    ax.axhline(mu[-1], color=f"C{i}", ls=":", label=label)
        ax1.set_title("subspace_sin (largest principal angle to B*)")
        ax2.set_title(r"$\|B_\perp^\top B\|_2^2 / \|B_*^\top B\|_2^2$")
        for ax in (ax1, ax2):
            ax.set_yscale("log")
            ax.set_xlabel("step")
            ax.legend(fontsize=7)

    md = md_table(["method", "signal eigenvalues", "‖B⊥ᵀB‖₂²", "relative", "subspace_sin", "eff. rank", "steps"], table)
    md += (
        f"\n\nSame pool of {s.tasks} tasks, same seeds. FO-ANIL, ANIL, FO-MAML and MAML learn the same "
        "subspace with the same signal eigenvalues (the infinite-task theory predicts the same limit for all "
        "four at w = 0). Reptile runs 5 inner steps (with 1 it is joint training on the mean task, which is 0 "
        "here). Multi-task learning fits one head per pool task; its B has another scale (Burer–Monteiro "
        "balancing), so compare it through the scale-free columns. The method of moments is a one-shot "
        "estimate of width k."
    )
    return Presentation(draw, rows, md)


# --------------------------------------------------------------------------------------------
# adaptation


BASELINE_ADAPT = {"multitask": "ls_top_k", "moments": "ls_top_k"}  # baselines adapt by least squares on B


def present_adaptation(res: dict, s: Scale) -> Presentation:
    rows, table = [], []
    any_recs = next(iter(res.values()))
    ms = any_recs[0]["evaluation"]["m_test"]

    def learned(label, recs):
        est = BASELINE_ADAPT.get(label, "learned")
        name = label if est == "learned" else f"{label} (LS on top-k of B)"
        return (name, *risk(recs, est, "auto" if est == "learned" else "closed_form"))

    for label, recs in res.items():
        name, m, mu, sd = learned(label, recs)
        rows += tidy("adaptation", name, "m", m, "excess_risk", mu, sd, len(recs))
        table.append([name] + [f"{a:.3g} ± {b:.1g}" for a, b in zip(mu, sd)])
    theory_rows = (("oracle", "oracle"), ("scratch", "scratch"), ("limit", "FO-ANIL limit (theory)"))
    for est, name in theory_rows:
        m, mu, sd = risk(any_recs, est, "closed_form")  # nan where the expectation is infinite
        rows += tidy("adaptation", name, "m", m, "excess_risk", mu, sd, len(any_recs))
        table.append([f"*{name}*"] + [fmt(a) for a in mu])

    def draw(fig):
        ax = fig.subplots(1, 1)
        for i, (label, recs) in enumerate(res.items()):
            name, m, mu, sd = learned(label, recs)
            ls = ":" if label in BASELINE_ADAPT else "-"
            ax.errorbar(m, mu, yerr=sd, color=f"C{i}", marker="o", ms=4, lw=1.3, ls=ls, capsize=2, label=name)
        for (est, name), (c, ls) in zip(theory_rows, (("k", "--"), ("0.5", "--"), ("k", ":"))):
            m, mu, _ = risk(any_recs, est, "closed_form")
            ok = np.isfinite(mu)
            ax.plot(np.array(m)[ok], mu[ok], color=c, ls=ls, lw=1.8, label=name)
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xticks(ms, [str(m) for m in ms])
        ax.minorticks_off()
        ax.set_xlabel("m (samples of the new task)")
        ax.set_ylabel(r"excess risk $E\|\hat\theta-\theta\|^2$")
        ax.set_title("one head step from the learned initialisation, on new tasks")
        ax.legend(fontsize=7, ncol=2)

    md = md_table(["estimator"] + [f"m={m}" for m in ms], table)
    md += (
        "\n\nOne gradient step on the head (step α) from each meta-learned initialisation, on new tasks "
        "(closed form for the linear model; mean ± sd over seeds). The baselines have no initialisation "
        "made for one step (multi-task's B has another scale, the moments' B is orthonormal), so they adapt "
        "by least squares on the top-k directions of their B (closed form given B; – where infinite). "
        "Oracle: least squares on B*; "
        "scratch: least squares in R^d, min-norm below d (closed forms; – where the expectation is infinite, "
        "m within one of the dimension)."
    )
    return Presentation(draw, rows, md)


# --------------------------------------------------------------------------------------------
# width


def width_series(s: Scale) -> list[Series]:
    return [Series(f"width {w}", (*infinite(s), f"model.width={w}"), evaluate=True) for w in s.widths]


def present_width(res: dict, s: Scale) -> Presentation:
    widths, rows, table = [], [], []
    cols = {k: [] for k in ("perp_norm2", "effective_rank", "risk", "risk_pred", "eig_err")}
    for label, recs in res.items():
        w = int(label.split()[-1])
        widths.append(w)
        m_idx = recs[0]["evaluation"]["m_test"].index(20) if 20 in recs[0]["evaluation"]["m_test"] else 0
        m_star = recs[0]["evaluation"]["m_test"][m_idx]
        r = risk(recs, "learned")[1][m_idx]
        rp = limit_risk(m_star, w)
        eig = final_vec(recs, "signal_eigs")[0]
        pe = predicted_eigs(width=w)
        err = float(np.max(np.abs(eig - pe) / np.maximum(pe, 1e-12)))
        for k, v in (
            ("perp_norm2", final(recs, "perp_norm2")[0]),
            ("effective_rank", final(recs, "effective_rank")[0]),
            ("risk", r),
            ("risk_pred", rp),
            ("eig_err", err),
        ):
            cols[k].append(v)
        table.append(
            [str(w), fmt(cols["perp_norm2"][-1]), fmt(cols["effective_rank"][-1]), fmt(r), fmt(rp), f"{err:.1e}"]
        )
    for k in ("perp_norm2", "effective_rank", "risk"):
        rows += tidy(
            "width",
            k,
            "width",
            widths,
            k,
            cols[k],
            [0] * len(widths),
            len(next(iter(res.values()))),
            cols["risk_pred"] if k == "risk" else None,
        )

    def draw(fig):
        axes = fig.subplots(1, 3)
        axes[0].loglog(widths, cols["perp_norm2"], "o-")
        axes[0].set_title(r"final $\|B_\perp^\top B\|_2^2$")
        axes[1].semilogx(widths, cols["effective_rank"], "o-")
        axes[1].axhline(K, color="k", ls=":", lw=1, label="k")
        axes[1].set_title("effective rank of B")
        axes[1].legend()
        axes[2].semilogx(widths, cols["risk"], "o-", label="measured (closed form at final B)")
        axes[2].semilogx(widths, cols["risk_pred"], "k--", label="predicted at the limit")
        axes[2].set_title("one-step excess risk at m = m_in")
        axes[2].legend(fontsize=7)
        for ax in axes:
            ax.set_xlabel("width k'")
            ax.set_xticks(widths, [str(w) for w in widths])
            ax.minorticks_off()

    md = md_table(
        ["width k'", "‖B⊥ᵀB‖₂²", "eff. rank", "one-step risk (m=m_in)", "predicted", "signal eig. rel. error"], table
    )
    md += (
        "\n\nInfinite tasks. Below k the run keeps the top-k' directions of Σ* (the underparametrized "
        "prediction, §5.5) and pays for the missing ones in risk; from k' = k on, the risk reaches the same "
        "limit whatever the width: the extra directions are unlearned (slowly, like 1/t, which is the "
        "remaining ‖B⊥ᵀB‖₂² and the small excess over the prediction at the widest widths)."
    )
    return Presentation(draw, rows, md)


# --------------------------------------------------------------------------------------------
# alpha


ALPHAS = (0.05, 0.1, 0.2)


def alpha_series(s: Scale) -> list[Series]:
    return [
        Series(f"alpha {a}", (*infinite(s, steps=int(s.steps_inf * 0.1 / a)), f"method.alpha={a}"), evaluate=True)
        for a in ALPHAS
    ]


def present_alpha(res: dict, s: Scale) -> Presentation:
    rows, table = [], []
    gam = predicted_eigs(alpha=1.0, width=s.d)  # γ_j = α · (γ_j/α)
    scaled, risks = [], []
    for label, recs in res.items():
        a = float(label.split()[-1])
        eig = final_vec(recs, "signal_eigs")[0] * a
        m_idx = recs[0]["evaluation"]["m_test"].index(20) if 20 in recs[0]["evaluation"]["m_test"] else 0
        r = float(risk(recs, "learned")[1][m_idx])
        scaled.append(eig)
        risks.append(r)
        table.append([str(a), ", ".join(f"{x:.5g}" for x in eig), fmt(r), str(recs[0]["summary"]["steps"])])
        rows += tidy("alpha", label, "j", list(range(1, K + 1)), "alpha_signal_eig", eig, [0] * K, len(recs), gam)
    rp = limit_risk(20, s.d)
    table.append(["*predicted*", ", ".join(f"{x:.5g}" for x in gam), fmt(rp), "–"])

    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2)
        for j in range(K):
            ax1.plot(ALPHAS, [e[j] for e in scaled], "o-", color=f"C{j}")
            ax1.axhline(gam[j], color=f"C{j}", ls="--", lw=1)
        ax1.set_xscale("log")
        ax1.set_title(r"$\alpha\cdot$ eigenvalues of $B_*^\top BB^\top B_*$ (dashed: $\gamma_j$)")
        ax1.set_xlabel("α")
        ax2.plot(ALPHAS, risks, "o-", label="measured")
        ax2.axhline(rp, color="k", ls="--", label="predicted")
        ax2.set_ylim(0.95 * rp, 1.05 * rp)  # ±5% of the prediction
        ax2.ticklabel_format(axis="y", useOffset=False)
        ax2.set_xscale("log")
        ax2.set_title("one-step excess risk at m = m_in")
        ax2.set_xlabel("α")
        ax2.legend()

    md = md_table(["α", "α · signal eigenvalues", "one-step risk (m=m_in)", "steps"], table)
    md += (
        "\n\nInfinite tasks, steps scaled like 1/α. α·B_∞B_∞ᵀ, hence the adapted predictor after one step "
        "of size α, does not depend on α (§5.4); only the speed does."
    )
    return Presentation(draw, rows, md)


# --------------------------------------------------------------------------------------------
# relu


def relu_series(s: Scale) -> list[Series]:
    base = (
        f"task.d={s.d}",
        f"model.width={s.d}",
        f"data.tasks={s.relu_tasks}",
        f"run.steps={s.relu_steps}",
        f"run.eval_every={max(1, s.relu_steps // 50)}",
    )
    return [Series(kind, (*base, f"model.kind={kind}"), evaluate=True) for kind in ("linear", "relu2", "relu3")]


def present_relu(res: dict, s: Scale) -> Presentation:
    rows, table = [], []
    any_recs = next(iter(res.values()))
    ms = any_recs[0]["evaluation"]["m_test"]
    for label, recs in res.items():
        st, mu, sd = curve(recs, "span_energy")
        rows += tidy("relu", label, "step", st, "span_energy", mu, sd, len(recs))
        m, rmu, rsd = risk(recs, "learned", "mc_mean")
        rows += tidy("relu", label, "m", m, "excess_risk", rmu, rsd, len(recs))
        table.append([label, f"{mu[0]:.3f} → {mu[-1]:.3f}"] + [f"{a:.3g} ± {b:.1g}" for a, b in zip(rmu, rsd)])
    for est in ("oracle", "scratch"):
        m, mu, _ = risk(any_recs, est, "closed_form")
        table.append([f"*{est}*", "–"] + [fmt(x) for x in mu])

    def draw(fig):
        ax1, ax2 = fig.subplots(1, 2)
        for i, (label, recs) in enumerate(res.items()):
            st, mu, sd = curve(recs, "span_energy")
            band(ax1, st, mu, sd, color=f"C{i}", label=label)
            m, rmu, rsd = risk(recs, "learned", "mc_mean")
            ax2.errorbar(m, rmu, yerr=rsd, color=f"C{i}", marker="o", ms=4, capsize=2, label=label)
        for est, c in (("oracle", "k"), ("scratch", "0.5")):
            m, mu, _ = risk(any_recs, est, "closed_form")
            ok = np.isfinite(mu)
            ax2.plot(np.array(m)[ok], mu[ok], color=c, ls="--", label=est)
        ax1.set_title(r"first-layer energy in span(B*): $\|B_*^\top B\|_F^2/\|B\|_F^2$")
        ax1.set_xlabel("step")
        ax1.axhline(K / s.d, color="k", ls=":", lw=1, label="random (k/d)")
        ax1.legend(fontsize=7)
        ax2.set_xscale("log"), ax2.set_yscale("log")
        ax2.set_xticks(ms, [str(m) for m in ms])
        ax2.minorticks_off()
        ax2.set_xlabel("m")
        ax2.set_title("one head step on new tasks: excess risk (Monte-Carlo)")
        ax2.legend(fontsize=7)

    md = md_table(["model", "span energy (start → end)"] + [f"risk m={m}" for m in ms], table)
    md += (
        f"\n\nFO-ANIL on a pool of {s.relu_tasks} tasks with two- and three-layer ReLU networks "
        "(wᵀrelu(Bᵀx), wᵀrelu(Cᵀrelu(Bᵀx))); the head adapts. No theory covers these; the measurement is "
        "whether the first layer concentrates its energy in span(B*) (a random B has k/d of it) and what one "
        "head step then buys on new tasks."
    )
    return Presentation(draw, rows, md)


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "learning",
            "Learning the shared representation",
            "The eigenvalues of B*ᵀBBᵀB* converge to γ_j/α (MATH.md §5.1), exponentially fast.",
            learning_series,
            present_learning,
        ),
        Experiment(
            "unlearning",
            "Unlearning the extra directions",
            "‖B⊥ᵀB_t‖₂² → 0 like C/t with C = m_in/(2α²β(tr Σ* + σ²)) (§5.2); nothing is unlearned when "
            "m_in = ∞; multi-task learning does not unlearn.",
            unlearning_series,
            present_unlearning,
        ),
        Experiment(
            "methods",
            "Every method on the paper's setting",
            "FO-ANIL, ANIL, FO-MAML and MAML learn the same representation; the baselines differ.",
            method_series,
            present_methods,
        ),
        Experiment(
            "adaptation",
            "Test-time adaptation",
            "One head step from FO-ANIL's initialisation comes close to the oracle and far below scratch (§5.6).",
            method_series,
            present_adaptation,
        ),
        Experiment(
            "width",
            "Width of the network",
            "Below k the top-k' directions of Σ* are kept (§5.5); from k on, overparametrization does not "
            "hurt: rank k and the same one-step risk (§5.3).",
            width_series,
            present_width,
        ),
        Experiment(
            "alpha",
            "α-invariance",
            "α·B_∞B_∞ᵀ, and so the adapted predictor, does not depend on α (§5.4).",
            alpha_series,
            present_alpha,
        ),
        Experiment(
            "relu",
            "ReLU networks",
            "FO-ANIL on two- and three-layer ReLU networks concentrates the first layer on span(B*).",
            relu_series,
            present_relu,
        ),
    )
}
