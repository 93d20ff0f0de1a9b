"""Draws the figures of the Concepts pages (docs/concepts/*.md).

Pure numpy + matplotlib, seeded, no ML framework needed:

    python docs/figures/make_concept_figures.py                  # all figures
    python docs/figures/make_concept_figures.py --only lsh_hashing

Each figure is written to docs/figures/<name>.png. Numbers in the figures are
computed here from random toy data (no measurement of the package).
"""

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patches  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent
DPI = 110
BUCKET_COLORS = plt.get_cmap("tab10").colors


def _save(fig, name):
    path = OUT / f"{name}.png"
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    print(f"wrote {path.relative_to(OUT.parents[1])}")


def lsh_hash(x, rotations):
    """h(x) = argmax([xR ; -xR]) for x (n, d) and R (d, n_buckets / 2)."""
    rotated = x @ rotations
    return np.argmax(np.concatenate([rotated, -rotated], axis=-1), axis=-1)


def clustered_vectors(rng, length, dim, n_clusters, spread=0.35):
    """Unit vectors drawn around `n_clusters` random directions, in random order."""
    centers = rng.normal(size=(n_clusters, dim))
    labels = rng.integers(0, n_clusters, size=length)
    x = centers[labels] + spread * rng.normal(size=(length, dim))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --------------------------------------------------------------------- figures


def fig_lsh_hashing():
    """Two hash rounds of 2-D points: the bucket is the nearest of +-R's columns."""
    rng = np.random.default_rng(0)
    angles = np.concatenate([rng.normal(c, 0.25, 25) for c in (0.3, 2.0, 3.6, 5.0)])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for r, ax in enumerate(axes):
        rotations = rng.normal(size=(2, 2))  # d = 2, n_buckets = 4
        buckets = lsh_hash(x, rotations)
        directions = np.concatenate([rotations, -rotations], axis=-1).T
        for b in range(4):
            ax.scatter(*x[buckets == b].T, s=18, color=BUCKET_COLORS[b], label=f"bucket {b}")
            u = directions[b] / np.linalg.norm(directions[b])
            ax.annotate(
                "",
                xy=1.35 * u,
                xytext=(0, 0),
                arrowprops=dict(arrowstyle="->", color=BUCKET_COLORS[b], lw=2),
            )
            sign = "+" if b < 2 else "-"
            ax.text(*(1.5 * u), f"{sign}R[:, {b % 2}]", ha="center", va="center", fontsize=8)
        ax.add_patch(patches.Circle((0, 0), 1, fill=False, ls=":", color="gray"))
        ax.set(
            xlim=(-1.7, 1.7),
            ylim=(-1.7, 1.7),
            aspect="equal",
            xticks=[],
            yticks=[],
            title=f"hash round {r + 1}: a fresh random R",
        )
    axes[0].legend(loc="lower left", fontsize=7, frameon=False)
    fig.suptitle(r"Angular LSH: $h(x) = \arg\max([xR\,;\,-xR])$ (4 buckets, d = 2)")
    _save(fig, "lsh_hashing")


def _attention_scene(seed=1, length=48, n_buckets=8):
    rng = np.random.default_rng(seed)
    x = clustered_vectors(rng, length, 8, n_clusters=6)
    buckets = lsh_hash(x, rng.normal(size=(8, n_buckets // 2)))
    order = np.lexsort((np.arange(length), buckets))  # stable sort by (bucket, position)
    return x, buckets, order


def fig_lsh_attention():
    """Same-bucket attention in the original order and after sorting by bucket."""
    x, buckets, order = _attention_scene()
    same = buckets[:, None] == buckets[None, :]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    for ax, (mask, title) in zip(
        axes,
        [
            (same, "(a) original order: query i may attend\nto key j iff h(q_i) = h(k_j)"),
            (
                same[np.ix_(order, order)],
                "(b) sorted by (bucket, position):\nbuckets become blocks",
            ),
        ],
    ):
        ax.imshow(mask, cmap="Purples", vmin=0, vmax=1.4)
        ax.set(title=title, xlabel="key", ylabel="query")
    fig.suptitle("LSH attention on a toy sequence (48 tokens, 8 buckets)", y=1.04)
    _save(fig, "lsh_attention")


def fig_chunking():
    """Sorted sequence cut into chunks of m = 2l / n_buckets; each attends to itself and its predecessor."""
    x, buckets, order = _attention_scene()
    length, n_buckets = len(buckets), 8
    m = 2 * length // n_buckets
    chunk = np.arange(length) // m
    window = (chunk[:, None] == chunk[None, :]) | (chunk[:, None] == chunk[None, :] + 1)
    sorted_buckets = buckets[order]
    same = sorted_buckets[:, None] == sorted_buckets[None, :]
    image = np.where(window & same, 2, np.where(window, 1, np.where(same, 0.5, 0)))
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.4))
    axes[0].imshow(image, cmap="Purples", vmin=0, vmax=2.4)
    for c in range(1, length // m):
        axes[0].axhline(c * m - 0.5, color="gray", lw=0.6)
        axes[0].axvline(c * m - 0.5, color="gray", lw=0.6)
    axes[0].set(
        title=f"(a) chunks of m = 2l/n_buckets = {m}: each attends\n"
        "to itself and the previous chunk (dark: same bucket)",
        xlabel="key (sorted)",
        ylabel="query (sorted)",
    )
    lengths = 2.0 ** np.arange(8, 17)
    axes[1].loglog(lengths, lengths**2, "o-", label="full attention: $l^2$")
    for m_plot in (64, 128):
        axes[1].loglog(lengths, lengths * 2 * m_plot, "s-", label=f"chunked, m = {m_plot}: $2ml$")
    axes[1].set(
        title="(b) attention logits per head (formula)", xlabel="sequence length l", ylabel="logits"
    )
    axes[1].legend(frameon=False)
    _save(fig, "chunking")


def _lsh_attention_matrix(x, rng, n_rounds, n_buckets):
    """Effective attention weights of shared-QK LSH attention with `n_rounds` rounds.

    Round r attends within its buckets P_i^(r) (no chunking, for clarity); rounds
    are combined with weights exp(z(i, P_i^(r)) - logsumexp_r z(i, P_i^(r))).
    """
    length = len(x)
    logits = x @ x.T * np.sqrt(x.shape[1])  # unit keys scaled by 1 / sqrt(d); |q| = sqrt(d)
    logits[np.diag_indices(length)] = -1e5  # no attention to oneself
    weights, lse = [], []
    for _ in range(n_rounds):
        buckets = lsh_hash(x, rng.normal(size=(x.shape[1], n_buckets // 2)))
        masked = np.where(buckets[:, None] == buckets[None, :], logits, -1e9)
        z = np.log(np.exp(masked - masked.max(1, keepdims=True)).sum(1)) + masked.max(1)
        weights.append(np.exp(masked - z[:, None]))
        lse.append(z)
    lse = np.stack(lse)
    round_weights = np.exp(lse - np.log(np.exp(lse - lse.max(0)).sum(0)) - lse.max(0))
    return np.einsum("ri,rij->ij", round_weights, np.stack(weights)), logits


def fig_multi_round():
    """More hash rounds: LSH attention approaches full attention."""
    rng = np.random.default_rng(2)
    x = clustered_vectors(rng, 40, 16, n_clusters=5, spread=0.6)
    # Order tokens by their most similar cluster direction, so the blocks show.
    order = np.lexsort((np.arange(40), np.argmax(x @ x[:5].T, axis=1)))
    x = x[order]
    full = None
    panels, errors = [], {}
    for rounds in (1, 2, 4, 8):
        errs = []
        for trial in range(20):
            approx, logits = _lsh_attention_matrix(
                x, np.random.default_rng(100 * rounds + trial), rounds, n_buckets=8
            )
            if full is None:
                e = np.exp(logits - logits.max(1, keepdims=True))
                full = e / e.sum(1, keepdims=True)
            errs.append(np.abs(approx - full).sum(1).mean())
            if trial == 0 and rounds in (1, 4):
                panels.append((approx, f"LSH, {rounds} round{'s' if rounds > 1 else ''}"))
        errors[rounds] = np.mean(errs)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    for ax, (matrix, title) in zip(axes, [(full, "full attention")] + panels):
        ax.imshow(matrix, cmap="Purples", vmin=0, vmax=full.max())
        ax.set(title=title, xlabel="key", ylabel="query")
    axes[3].plot(list(errors), list(errors.values()), "o-")
    axes[3].set(xscale="log", ylim=(0, None))
    axes[3].xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes[3].set(
        xticks=list(errors),
        xticklabels=list(errors),
        title="mean L1 error of attention rows\n(20 random draws)",
        xlabel="hash rounds",
    )
    fig.suptitle("Multi-round hashing on toy data (40 tokens, 8 buckets, no chunking)")
    _save(fig, "multi_round")


def _box(ax, xy, text, width=1.3, height=0.6, color="#d9d2f0"):
    ax.add_patch(
        patches.FancyBboxPatch(
            (xy[0] - width / 2, xy[1] - height / 2),
            width,
            height,
            boxstyle="round,pad=0.05",
            fc=color,
            ec="black",
        )
    )
    ax.text(*xy, text, ha="center", va="center", fontsize=8.5)


def _plus(ax, xy):
    ax.add_patch(patches.Circle(xy, 0.2, fc="white", ec="black"))
    ax.text(*xy, "+", ha="center", va="center", fontsize=12)


def _arrow(ax, start, end):
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", lw=1.2))


def fig_reversible():
    """Forward and inverse of one reversible block."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, inverse in zip(axes, (False, True)):
        ax.set(xlim=(0, 8), ylim=(0, 4), aspect="equal")
        ax.axis("off")
        top, bottom = 3.0, 1.0
        left, right = ("Y", "X") if inverse else ("X", "Y")
        ax.text(0.3, top, f"${left}_1$", fontsize=13, va="center")
        ax.text(0.3, bottom, f"${left}_2$", fontsize=13, va="center")
        ax.text(7.4, top, f"${right}_1$", fontsize=13, va="center")
        ax.text(7.4, bottom, f"${right}_2$", fontsize=13, va="center")
        sign = "−" if inverse else "+"
        if not inverse:
            # Y1 = X1 + F(X2); Y2 = X2 + G(Y1)
            _box(ax, (2.2, 2.0), "F: LayerNorm,\nattention", width=1.7, height=0.8)
            _box(ax, (5.0, 2.0), "G: LayerNorm,\nfeed-forward", width=1.7, height=0.8)
            _plus(ax, (3.6, top))
            _plus(ax, (6.4, bottom))
            _arrow(ax, (0.7, top), (3.4, top))
            _arrow(ax, (3.8, top), (7.3, top))
            _arrow(ax, (0.7, bottom), (6.2, bottom))
            _arrow(ax, (6.6, bottom), (7.3, bottom))
            _arrow(ax, (1.2, bottom), (2.2, 1.55))
            _arrow(ax, (2.2, 2.45), (3.55, top - 0.2))
            _arrow(ax, (4.1, top), (5.0, 2.45))
            _arrow(ax, (5.0, 1.55), (6.35, bottom + 0.2))
            ax.set_title("forward:  $Y_1 = X_1 + F(X_2)$,   $Y_2 = X_2 + G(Y_1)$")
        else:
            # X2 = Y2 - G(Y1); X1 = Y1 - F(X2)
            _box(ax, (2.6, 2.0), "G", width=1.0)
            _plus(ax, (3.9, bottom))
            _plus(ax, (5.9, top))
            _box(ax, (5.0, 2.0), "F", width=1.0)
            ax.text(
                3.9,
                bottom,
                sign,
                ha="center",
                va="center",
                fontsize=12,
                bbox=dict(fc="white", ec="black", boxstyle="circle"),
            )
            ax.text(
                5.9,
                top,
                sign,
                ha="center",
                va="center",
                fontsize=12,
                bbox=dict(fc="white", ec="black", boxstyle="circle"),
            )
            _arrow(ax, (0.7, top), (5.7, top))
            _arrow(ax, (6.1, top), (7.3, top))
            _arrow(ax, (0.7, bottom), (3.7, bottom))
            _arrow(ax, (4.1, bottom), (7.3, bottom))
            _arrow(ax, (1.6, top), (2.6, 2.3))
            _arrow(ax, (2.6, 1.7), (3.9, bottom + 0.2))
            _arrow(ax, (4.5, bottom), (5.0, 1.7))
            _arrow(ax, (5.0, 2.3), (5.9, top - 0.2))
            ax.set_title(
                "backward rebuilds the inputs:  $X_2 = Y_2 - G(Y_1)$,   $X_1 = Y_1 - F(X_2)$"
            )
    _save(fig, "reversible")


def fig_chunked_feed_forward():
    """The d_ff-wide intermediate exists for one chunk at a time."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.set(xlim=(0, 10), ylim=(-0.3, 4.3))
    ax.axis("off")
    n_chunks, height = 4, 0.8
    for c in range(n_chunks):
        y = 3.4 - c * (height + 0.15)
        active = c == 1
        color = "#b9a7e8" if active else "#eeeeee"
        ax.add_patch(
            patches.Rectangle((0.5, y - height / 2), 1.2, height, fc="#d9d2f0", ec="black")
        )
        ax.text(1.1, y, f"chunk {c + 1}\n(l/c, d)", ha="center", va="center", fontsize=8)
        ax.add_patch(
            patches.Rectangle(
                (3.2, y - height / 2), 3.6, height, fc=color, ec="black", ls="-" if active else ":"
            )
        )
        ax.text(
            5.0,
            y,
            "(l/c, d_ff) intermediate" + ("  <- live now" if active else ""),
            ha="center",
            va="center",
            fontsize=8,
        )
        ax.add_patch(
            patches.Rectangle((8.3, y - height / 2), 1.2, height, fc="#d9d2f0", ec="black")
        )
        ax.text(8.9, y, "(l/c, d)", ha="center", va="center", fontsize=8)
        _arrow(ax, (1.75, y), (3.15, y))
        _arrow(ax, (6.85, y), (8.25, y))
    ax.text(2.45, 3.85, "W1, activation", ha="center", fontsize=9)
    ax.text(7.55, 3.85, "W2", ha="center", fontsize=9)
    ax.set_title(
        "Chunked feed-forward: c chunks processed one after another; "
        "peak intermediate memory l·d_ff / c instead of l·d_ff"
    )
    _save(fig, "chunked_feed_forward")


def fig_axial_position_embeddings():
    """Two small tables broadcast over a grid and flattened to positions."""
    fig, ax = plt.subplots(figsize=(10, 3.4))
    ax.set(xlim=(0, 12), ylim=(0, 4.2), aspect="equal")
    ax.axis("off")
    n1, n2 = 4, 6
    for i in range(n1):  # E1: (n1, 1, d1)
        ax.add_patch(patches.Rectangle((0.5, 3.2 - i * 0.6), 0.5, 0.5, fc=BUCKET_COLORS[i], ec="k"))
    ax.text(0.75, 3.9, "$E^{(1)}$: $(n_1, 1, d_1)$", ha="center", fontsize=9)
    for j in range(n2):  # E2: (1, n2, d2)
        ax.add_patch(
            patches.Rectangle(
                (1.8 + j * 0.45, 3.3), 0.4, 0.4, fc=plt.cm.Greys(0.2 + 0.12 * j), ec="k"
            )
        )
    ax.text(3.1, 3.9, "$E^{(2)}$: $(1, n_2, d_2)$", ha="center", fontsize=9)
    for i in range(n1):  # the grid of concatenations
        for j in range(n2):
            x0, y0 = 1.8 + j * 0.45, 2.6 - i * 0.6
            ax.add_patch(patches.Rectangle((x0, y0), 0.2, 0.4, fc=BUCKET_COLORS[i], ec="k", lw=0.5))
            ax.add_patch(
                patches.Rectangle(
                    (x0 + 0.2, y0), 0.2, 0.4, fc=plt.cm.Greys(0.2 + 0.12 * j), ec="k", lw=0.5
                )
            )
    ax.text(
        3.1,
        0.35,
        r"broadcast and concatenate: $[E^{(1)}_{j_1} ; E^{(2)}_{j_2}]$",
        ha="center",
        fontsize=9,
    )
    _arrow(ax, (4.7, 1.6), (5.6, 1.6))
    for p in range(n1 * n2):  # flattened row-major
        i, j = divmod(p, n2)
        x0 = 5.8 + p * 0.25
        ax.add_patch(patches.Rectangle((x0, 1.6), 0.25, 0.3, fc=BUCKET_COLORS[i], ec="k", lw=0.4))
        ax.add_patch(
            patches.Rectangle((x0, 1.3), 0.25, 0.3, fc=plt.cm.Greys(0.2 + 0.12 * j), ec="k", lw=0.4)
        )
    ax.text(
        8.8, 2.2, "position $p = j_1 n_2 + j_2$  (flattened, row-major)", ha="center", fontsize=9
    )
    ax.text(
        8.8, 0.8, "parameters $n_1 d_1 + n_2 d_2$  instead of  $n_1 n_2 d$", ha="center", fontsize=9
    )
    _save(fig, "axial_position_embeddings")


FIGURES = {
    "lsh_hashing": fig_lsh_hashing,
    "lsh_attention": fig_lsh_attention,
    "chunking": fig_chunking,
    "multi_round": fig_multi_round,
    "reversible": fig_reversible,
    "chunked_feed_forward": fig_chunked_feed_forward,
    "axial_position_embeddings": fig_axial_position_embeddings,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        choices=sorted(FIGURES),
        action="append",
        help="draw only this figure (repeatable)",
    )
    args = parser.parse_args()
    for name in args.only or FIGURES:
        FIGURES[name]()


if __name__ == "__main__":
    main()
