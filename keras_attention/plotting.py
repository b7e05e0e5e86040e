"""Pictures of position encodings and attention weights (the `[plot]` extra).

matplotlib is imported only when a picture is drawn. The functions build a
`matplotlib.figure.Figure` directly, without pyplot's global state, so they
work on machines with no display; `fig.savefig(path)` writes the file.
"""

import numpy as np


def _figure(**kwargs):
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "keras_attention's plotting functions need matplotlib, the optional "
            "`plot` extra: pip install 'keras-attention-layers[plot]'"
        ) from error
    return Figure(**kwargs)


def plot_position_encoding(length=64, depth=64, max_wavelength=10000, table=None):
    """Draws a position-encoding table as a heat map.

    Args:
        length: number of positions (rows) of the sinusoidal table.
        depth: encoding size (columns) of the sinusoidal table.
        max_wavelength: the sinusoidal table's longest wavelength.
        table: optional `(length, depth)` array to draw instead, e.g. the
            weights of a trained `LearnedPositionEmbedding`.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    if table is None:
        from keras_attention.layers.sinusoidal_position_encoding import (
            sinusoidal_table,
        )

        table = sinusoidal_table(length, depth, max_wavelength)
    table = np.asarray(table)
    if table.ndim != 2:
        raise ValueError(
            "plot_position_encoding: `table` must have shape (length, depth). "
            f"Received: table.shape={table.shape}"
        )
    figure = _figure(figsize=(7, 4), layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(table, aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
    ax.set_xlabel("encoding dimension")
    ax.set_ylabel("position")
    ax.set_title("Position encoding")
    figure.colorbar(image, ax=ax)
    return figure


def plot_attention(weights, query_tokens=None, key_tokens=None, title=None):
    """Draws attention weights as heat maps, one per head.

    Args:
        weights: `(q_len, k_len)` for one map, or `(num_maps, q_len, k_len)`
            for several (e.g. the heads of one layer), side by side. One
            example of the output of `attention_weights` is
            `weights[layer][example]`.
        query_tokens: optional labels of the rows (queries).
        key_tokens: optional labels of the columns (keys).
        title: optional figure title.

    Returns:
        A `matplotlib.figure.Figure`.
    """
    weights = np.asarray(weights, dtype="float32")
    if weights.ndim == 2:
        weights = weights[None]
    if weights.ndim != 3:
        raise ValueError(
            "plot_attention: `weights` must have shape (q_len, k_len) or "
            f"(num_maps, q_len, k_len). Received: weights.shape={weights.shape}"
        )
    count, q_len, k_len = weights.shape
    for argument, labels, size in (
        ("query_tokens", query_tokens, q_len),
        ("key_tokens", key_tokens, k_len),
    ):
        if labels is not None and len(labels) != size:
            raise ValueError(
                f"plot_attention: `{argument}` must have one label per "
                f"position ({size}). Received: {len(labels)} labels"
            )
    figure = _figure(figsize=(3.2 * count + 0.8, 3.4), layout="constrained")
    axes = figure.subplots(1, count, squeeze=False)[0]
    for index, (ax, grid) in enumerate(zip(axes, weights, strict=True)):
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
        if count > 1:
            ax.set_title(f"head {index}")
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        if key_tokens is not None:
            ax.set_xticks(range(k_len), [str(t) for t in key_tokens], rotation=90)
        if query_tokens is not None:
            ax.set_yticks(range(q_len), [str(t) for t in query_tokens])
    figure.colorbar(image, ax=list(axes), shrink=0.8)
    if title:
        figure.suptitle(title)
    return figure
