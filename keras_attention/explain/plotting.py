"""Pictures of position encodings and attention weights (the `[plot]` extra).

matplotlib is imported only when a picture is drawn. The functions build a
`matplotlib.figure.Figure` directly, without pyplot's global state, so they
work on machines with no display; `fig.savefig(path)` writes the file.

Tokens in any script: when the default font lacks a label's characters
(Chinese, Japanese, Korean, ...), the labels get an installed font that has
them as a fallback (searched with matplotlib's font manager); when none has
them, one warning says which package to install.
"""

import functools
import math
import warnings

import numpy as np

_SCALES = ("shared", "per_head", "probability")
_NAN_COLOUR = "#d62728"  # red: not in viridis
# Masked cells, and their legend: light grey, hatched.
_MASKED_STYLE = {"facecolor": "#d9d9d9", "edgecolor": "#7f7f7f", "hatch": "//"}
_FONT_HINT = (
    "Install a font that has them, e.g. Noto CJK for Chinese, Japanese and "
    "Korean: `sudo apt-get install fonts-noto-cjk` on Debian/Ubuntu."
)
_warned_about_glyphs = False


def new_figure(**kwargs):
    """A matplotlib `Figure` (no pyplot state), or an ImportError that names
    the `[plot]` extra."""
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "keras_attention's plotting functions need matplotlib, the optional "
            "`plot` extra: pip install 'keras-attention-layers[plot]'"
        ) from error
    return Figure(**kwargs)


def plot_position_encoding(
    length=64, depth=64, max_wavelength=10000, table=None, title=None
):
    """Draws a position-encoding table as a heat map.

    The sinusoidal table is drawn on its own range, -1 to 1. A `table` you
    give (e.g. a learned one) is drawn on a colour range symmetric around 0
    that reaches its largest absolute value, so small trained values are not
    washed out, and is titled as a learned table.

    Args:
        length: number of positions (rows) of the sinusoidal table.
        depth: encoding size (columns) of the sinusoidal table.
        max_wavelength: the sinusoidal table's longest wavelength.
        table: optional `(length, depth)` array to draw instead, e.g. the
            weights of a trained `LearnedPositionEmbedding`
            (`layer.embeddings`).
        title: optional title; by default "Sinusoidal position encoding" or,
            with `table`, "Learned position table".

    Returns:
        A `matplotlib.figure.Figure`.
    """
    if table is None:
        from keras_attention.layers.sinusoidal_position_encoding import (
            sinusoidal_table,
        )

        table = sinusoidal_table(length, depth, max_wavelength)
        limit, default_title = 1.0, "Sinusoidal position encoding"
    else:
        table = np.asarray(table)
        if table.ndim != 2:
            raise ValueError(
                "plot_position_encoding: `table` must have shape (length, depth). "
                f"Received: table.shape={table.shape}"
            )
        finite = np.abs(table[np.isfinite(table)])
        limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        default_title = "Learned position table"
    table = np.asarray(table)
    figure = new_figure(figsize=(7, 4), layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(table, aspect="auto", cmap="RdBu", vmin=-limit, vmax=limit)
    ax.set_xlabel("encoding dimension")
    ax.set_ylabel("position")
    ax.set_title(default_title if title is None else title)
    figure.colorbar(image, ax=ax, label="value")
    return figure


def plot_attention(
    weights,
    query_tokens=None,
    key_tokens=None,
    title=None,
    *,
    mask=None,
    color_scale="shared",
    columns=None,
):
    """Draws attention weights as heat maps, one per head, in a grid.

    Any number of maps is laid out in rows of at most `columns` panels, each
    panel sized to its tokens, and every label stays inside the figure.
    Masked cells (where `mask` is 0) are drawn light grey and hatched, and a
    legend below the panels says so; NaN weights are drawn red, with a
    warning and a note in the title. Token
    labels in any script are drawn with an installed font that has their
    glyphs (see the module docstring).

    Args:
        weights: `(q_len, k_len)` for one map, or `(num_maps, q_len, k_len)`
            for several (e.g. the heads of one layer). One example of the
            output of `attention_weights` is `weights[layer][example]`.
        query_tokens: optional labels of the rows (queries).
        key_tokens: optional labels of the columns (keys).
        title: optional figure title.
        mask: optional array broadcastable to `weights`' shape, non-zero
            where a query may attend to a key (the layers' convention), e.g.
            a key padding mask `(k_len,)` or a causal `(q_len, k_len)`.
        color_scale: `"shared"` (default): one colour bar from 0 to the
            largest weight of all maps; `"per_head"`: each map its own, from 0
            to its largest weight; `"probability"`: one bar from 0 to 1.
        columns: panels per row; by default up to 4.

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
    if color_scale not in _SCALES:
        raise ValueError(
            f"plot_attention: `color_scale` must be one of {_SCALES}. "
            f"Received: color_scale={color_scale!r}"
        )
    if columns is not None and (
        isinstance(columns, bool) or not isinstance(columns, int) or columns < 1
    ):
        raise ValueError(
            "plot_attention: `columns` must be a positive integer or None. "
            f"Received: columns={columns!r}"
        )
    allowed = _broadcast_mask(mask, weights.shape)
    query_tokens = None if query_tokens is None else [str(t) for t in query_tokens]
    key_tokens = None if key_tokens is None else [str(t) for t in key_tokens]

    nans = int(np.isnan(weights).sum())
    if nans:
        warnings.warn(
            f"plot_attention: `weights` hold {nans} NaN values (of "
            f"{weights.size}); they are drawn red.",
            stacklevel=2,
        )
        note = f"weights hold {nans} NaN (red)"
        title = f"{title} ({note})" if title else note

    fonts = _fonts_for([*(query_tokens or []), *(key_tokens or []), title or ""])
    text = {} if fonts is None else {"fontfamily": fonts}

    columns = min(count, columns or 4)
    rows = math.ceil(count / columns)
    longest_key = max((len(t) for t in key_tokens or []), default=1)
    longest_query = max((len(t) for t in query_tokens or []), default=1)
    panel_width = min(6.0, max(2.4, 0.22 * k_len + 0.9 + 0.08 * longest_query))
    panel_height = min(6.0, max(2.2, 0.22 * q_len + 0.9 + 0.08 * longest_key))
    bar = 0.9 if color_scale == "per_head" else 0
    figure = new_figure(
        figsize=(
            columns * (panel_width + bar) + (0 if bar else 0.9),
            rows * panel_height + (0.5 if title else 0.1),
        ),
        layout="constrained",
    )
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.remove()
    axes = axes[:count]

    import matplotlib
    from matplotlib.ticker import MaxNLocator

    colours = matplotlib.colormaps["viridis"].with_extremes(bad=_NAN_COLOUR)
    tick_size = 10 if max(q_len, k_len) <= 16 else 8 if max(q_len, k_len) <= 32 else 6
    shared_top = _top(weights, allowed)
    for index, (ax, grid) in enumerate(zip(axes, weights, strict=True)):
        if color_scale == "probability":
            top = 1.0
        elif color_scale == "shared":
            top = shared_top
        else:
            top = _top(grid, None if allowed is None else allowed[index])
        image = ax.imshow(grid, vmin=0, vmax=top, cmap=colours)
        if allowed is not None:
            _hatch(ax, ~allowed[index])
        if count > 1:
            ax.set_title(f"head {index}")
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        # Ticks at positions, never between them.
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if key_tokens is not None:
            ax.set_xticks(
                range(k_len), key_tokens, rotation=90, fontsize=tick_size, **text
            )
        if query_tokens is not None:
            ax.set_yticks(range(q_len), query_tokens, fontsize=tick_size, **text)
        if color_scale == "per_head":
            figure.colorbar(image, ax=ax, shrink=0.8)
    if color_scale != "per_head":
        figure.colorbar(image, ax=list(axes), shrink=0.8, label="attention weight")
    if allowed is not None and not allowed.all():
        # A legend below the panels, where a long colour-bar label would be
        # cut at both ends of a short bar.
        from matplotlib.patches import Patch

        figure.legend(
            handles=[Patch(**_MASKED_STYLE, label="masked: no attention")],
            loc="outside lower center",
            frameon=False,
        )
    if title:
        figure.suptitle(title, **text)
    return figure


def _top(weights, allowed):
    """The largest finite weight (of the allowed cells), or 1 if none is > 0."""
    values = weights if allowed is None else weights[allowed]
    values = values[np.isfinite(values)]
    top = float(values.max()) if values.size else 0.0
    return top if top > 0 else 1.0


def _broadcast_mask(mask, shape):
    """`mask` as a boolean array of `shape` (True: may attend), or None."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    try:
        return np.broadcast_to(mask != 0, shape)
    except ValueError:
        raise ValueError(
            "plot_attention: `mask` must be broadcastable to the weights' shape "
            f"{shape} (e.g. (k_len,), (q_len, k_len)). Received: "
            f"mask.shape={mask.shape}"
        ) from None


def _hatch(ax, masked):
    """Light grey hatched cells where `masked` `(q_len, k_len)` is True."""
    rows, cols = np.nonzero(masked)
    if not rows.size:
        return
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    cells = [
        Rectangle((c - 0.5, r - 0.5), 1, 1) for r, c in zip(rows, cols, strict=True)
    ]
    ax.add_collection(PatchCollection(cells, **_MASKED_STYLE, linewidth=0))


def _fonts_for(texts):
    """A font family list for `texts`: None when the default font has every
    character; else the default family followed by an installed font that has
    the missing ones (matplotlib falls back glyph by glyph). Warns once when
    no installed font has them."""
    global _warned_about_glyphs
    characters = {c for t in texts for c in t if not c.isspace()}
    if not characters or all(ord(c) < 0x250 for c in characters):
        return None  # Latin: every default font has it
    import matplotlib
    from matplotlib import font_manager

    families = list(matplotlib.rcParams["font.family"])
    default = font_manager.findfont(font_manager.FontProperties(family=families))
    missing = {c for c in characters if ord(c) not in _charmap(default, 0)}
    if not missing:
        return None
    manager = font_manager.fontManager
    known = [e for e in manager.ttflist if e.style == "normal"]
    for entry in sorted(known, key=_preference):
        if _has(entry.fname, entry.index, missing):
            return [*families, entry.name]
    # matplotlib's font list is cached: a font installed since (e.g. with
    # apt-get) is on the system but not in it. Look there too.
    listed = {entry.fname for entry in manager.ttflist}
    for path in sorted(_system_fonts(), key=_preference):
        if path not in listed and _has(path, 0, missing):
            first = len(manager.ttflist)
            manager.addfont(path)
            return [*families, manager.ttflist[first].name]
    if not _warned_about_glyphs:
        _warned_about_glyphs = True
        shown = "".join(sorted(missing)[:12])
        warnings.warn(
            f"plot_attention: no installed font has the characters {shown!r} "
            f"of the tokens or title; they will be drawn as boxes. {_FONT_HINT}",
            stacklevel=3,
        )
    return None


def _preference(font):
    """Sort key of a font entry or path: CJK fonts first, then Noto; regular
    sans-serif faces first."""
    name = font if isinstance(font, str) else font.name
    plain = font.weight in ("normal", 400) if hasattr(font, "weight") else True
    return (
        "CJK" not in name,
        "Noto" not in name,
        not plain or "Bold" in name,
        "Serif" in name,
        name,
    )


def _has(path, index, characters):
    """Whether the font has glyphs for all `characters`. Never matplotlib's
    Last Resort font, whose glyph for every character is a box."""
    if "LastResort" in path:
        return False
    return all(ord(c) in _charmap(path, index) for c in characters)


def _system_fonts():
    from matplotlib import font_manager

    return font_manager.findSystemFonts()


@functools.cache
def _charmap(path, index):
    """The code points the font file `path` (face `index`) has glyphs for."""
    from matplotlib import ft2font

    try:
        return frozenset(ft2font.FT2Font(path, face_index=index).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()
