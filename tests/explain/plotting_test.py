import itertools
import pathlib
import sys
import warnings

import numpy as np
import pytest

from keras_attention import (
    plot_attention,
    plot_position_encoding,
    sinusoidal_table,
)
from keras_attention.explain import plotting
from tests.layer_test_case import assert_raises_with

SUBSET_FONT = pathlib.Path(__file__).parents[1] / "data" / "NotoSansCJK-subset.otf"
CJK = list("我爱学习编程")


def _drawn(figure):
    """Draws `figure` on an Agg canvas; returns the canvas' renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    figure.canvas.draw()
    return figure.canvas.get_renderer()


def _texts(figure):
    """The texts of `figure` that are drawn: not the labels of ticks
    outside their axis' view, which matplotlib keeps but does not draw."""
    from matplotlib.text import Text

    hidden = set()
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks():
                if not low - 1e-9 <= tick.get_loc() <= high + 1e-9:
                    hidden.update((tick.label1, tick.label2))
    return [
        t
        for t in figure.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t not in hidden
    ]


def _assert_texts_inside(figure):
    """Checks that every text of `figure`, drawn, lies on its canvas;
    returns the renderer."""
    renderer = _drawn(figure)
    width, height = figure.canvas.get_width_height()
    for text in _texts(figure):
        box = text.get_window_extent(renderer)
        assert box.x0 >= -1 and box.y0 >= -1, text.get_text()
        assert box.x1 <= width + 1 and box.y1 <= height + 1, text.get_text()
    return renderer


def test_position_encoding_picture_shows_the_table():
    figure = plot_position_encoding(length=20, depth=8)
    image = figure.axes[0].images[0]
    np.testing.assert_allclose(image.get_array(), sinusoidal_table(20, 8), atol=1e-6)
    assert image.get_clim() == (-1, 1)
    assert figure.axes[0].get_title() == "Sinusoidal position encoding"
    table = np.arange(6.0).reshape(3, 2)
    figure = plot_position_encoding(table=table)
    np.testing.assert_array_equal(figure.axes[0].images[0].get_array(), table)


def test_learned_table_is_titled_and_scaled_as_what_it_is():
    table = np.array([[0.02, -0.05], [0.01, 0.03]])
    figure = plot_position_encoding(table=table)
    # Its own range, symmetric around 0 (so 0 is white), not -1..1.
    assert figure.axes[0].images[0].get_clim() == (-0.05, 0.05)
    assert figure.axes[0].get_title() == "Learned position table"
    figure = plot_position_encoding(table=np.zeros((2, 2)), title="untrained")
    assert figure.axes[0].images[0].get_clim() == (-1, 1)
    assert figure.axes[0].get_title() == "untrained"


@pytest.mark.parametrize(
    "count, scale", [(1, "shared"), (5, "per_head"), (8, "shared")]
)
def test_heads_in_a_grid_every_text_inside_the_canvas(count, scale):
    tokens = [f"token_{i}" for i in range(8)]
    weights = np.random.default_rng(0).dirichlet(np.ones(8), size=(count, 8))
    figure = plot_attention(
        weights, tokens, tokens, title="a long title over all heads", color_scale=scale
    )
    panels = [ax for ax in figure.axes if ax.images]
    assert len(panels) == count
    # Rows of at most 4 panels.
    rows = {round(ax.get_position().y0, 3) for ax in panels}
    columns = {round(ax.get_position().x0, 3) for ax in panels}
    assert len(columns) == min(count, 4)
    assert len(rows) == -(-count // 4)
    assert len(_texts(figure)) > 2 * 8 * count  # the tick labels are among them
    renderer = _assert_texts_inside(figure)
    titles = [figure._suptitle] + [ax.title for ax in panels]
    titles = [t for t in titles if t is not None and t.get_text()]
    assert len(titles) == (1 if count == 1 else count + 1)
    boxes = [t.get_window_extent(renderer) for t in titles]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)


def test_colour_scale_shared_per_head_or_probability():
    weights = np.array([[[0.9, 0.1], [0.5, 0.5]], [[0.6, 0.4], [0.3, 0.7]]])
    shared = plot_attention(weights)
    assert [ax.images[0].get_clim() for ax in shared.axes if ax.images] == [
        (0, pytest.approx(0.9))
    ] * 2
    assert len(shared.axes) == 3  # two panels, one colour bar
    per_head = plot_attention(weights, color_scale="per_head")
    assert [ax.images[0].get_clim() for ax in per_head.axes if ax.images] == [
        (0, pytest.approx(0.9)),
        (0, pytest.approx(0.7)),
    ]
    assert len(per_head.axes) == 4  # a colour bar per panel
    fixed = plot_attention(weights, color_scale="probability")
    assert fixed.axes[0].images[0].get_clim() == (0, 1)
    with pytest.raises(
        ValueError,
        match=r"plot_attention: `color_scale` must be one of \('shared', "
        r"'per_head', 'probability'\)\. Received: color_scale='log'",
    ):
        plot_attention(weights, color_scale="log")
    with pytest.raises(
        ValueError,
        match=r"plot_attention: `columns` must be a positive integer or None\. "
        r"Received: columns=0",
    ):
        plot_attention(weights, columns=0)


def test_masked_cells_are_hatched_and_left_out_of_the_scale():
    weights = np.array([[0.2, 0.8, 0.0], [0.1, 0.9, 0.0]])
    mask = np.array([1, 1, 0])  # a key padding mask
    figure = plot_attention(weights, mask=mask)
    panel = figure.axes[0]
    (hatched,) = panel.collections
    assert hatched.get_hatch() == "//"
    # One cell per masked (query, key): the last column.
    corners = sorted(tuple(p.vertices[0]) for p in hatched.get_paths())
    assert corners == [(1.5, -0.5), (1.5, 0.5)]
    np.testing.assert_allclose(panel.images[0].get_array(), weights)
    assert panel.images[0].get_clim() == (0, pytest.approx(0.9))
    # A legend says what the hatching means, and no text is cut off (a
    # colour-bar label saying it was cut at both ends).
    (legend,) = figure.legends
    assert [t.get_text() for t in legend.get_texts()] == ["masked: no attention"]
    assert legend.legend_handles[0].get_hatch() == "//"
    _assert_texts_inside(figure)
    # Without tokens, ticks stand at positions, not between them.
    ticks = panel.get_xticks()
    assert set(ticks[(ticks >= 0) & (ticks <= 2)]) == {0, 1, 2}
    assert all(float(t).is_integer() for t in panel.get_yticks())
    with pytest.raises(
        ValueError,
        match=r"plot_attention: `mask` must be broadcastable to the weights' shape "
        r"\(1, 2, 3\) \(e\.g\. \(k_len,\), \(q_len, k_len\)\)\. Received: "
        r"mask\.shape=\(2,\)",
    ):
        plot_attention(weights, mask=[1, 0])


def test_nan_weights_are_named_in_a_warning_and_the_title():
    weights = np.full((2, 2, 2), 0.5)
    weights[1, 0, 0] = np.nan
    with pytest.warns(
        UserWarning,
        match=r"plot_attention: `weights` hold 1 NaN values \(of 8\); they are "
        r"drawn red\.",
    ):
        figure = plot_attention(weights, title="block 0")
    assert figure._suptitle.get_text() == "block 0 (weights hold 1 NaN (red))"


@pytest.fixture
def no_cjk_font(monkeypatch):
    """matplotlib sees only its own DejaVu fonts, as on the CI machine."""
    from matplotlib import font_manager

    manager = font_manager.fontManager
    dejavu = [e for e in manager.ttflist if e.name.startswith("DejaVu")]
    monkeypatch.setattr(manager, "ttflist", dejavu)
    monkeypatch.setattr(plotting, "_system_fonts", lambda: [])
    monkeypatch.setattr(plotting, "_warned_about_glyphs", False)
    return monkeypatch


def test_tokens_get_an_installed_font_that_has_their_glyphs(no_cjk_font):
    # The subset (18 characters of Noto Sans CJK, OFL) is "installed" on the
    # system but not yet in matplotlib's cached font list.
    no_cjk_font.setattr(plotting, "_system_fonts", lambda: [str(SUBSET_FONT)])
    figure = plot_attention(np.eye(6), CJK, CJK, title="我爱学习编程 attention")
    labels = figure.axes[0].get_xticklabels() + figure.axes[0].get_yticklabels()
    for text in [*labels, figure._suptitle]:
        assert text.get_fontfamily()[-1] == "Noto Sans CJK JP"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "Glyph ... missing from font"
        _drawn(figure)
    # Latin tokens keep the default font.
    figure = plot_attention(np.eye(2), ["a", "b"], ["c", "d"])
    assert figure.axes[0].get_xticklabels()[0].get_fontfamily() == ["sans-serif"]


def test_missing_glyphs_warn_once_with_the_install_hint(no_cjk_font):
    with pytest.warns(
        UserWarning,
        match=r"plot_attention: no installed font has the characters '习学我爱程编' "
        r"of the tokens or title; they will be drawn as boxes\. Install a font "
        r"that has them, .* `sudo apt-get install fonts-noto-cjk` on Debian/Ubuntu",
    ):
        plot_attention(np.eye(6), CJK, CJK)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_attention(np.eye(6), CJK, CJK)


def test_attention_picture_one_panel_per_head_with_labels(tmp_path):
    weights = np.random.default_rng(0).dirichlet(np.ones(4), size=(3, 2))
    figure = plot_attention(weights, ["a", "b"], ["w", "x", "y", "z"], title="t")
    panels = [ax for ax in figure.axes if ax.images]
    assert len(panels) == 3
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["w", "x", "y", "z"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["a", "b"]
    np.testing.assert_allclose(panels[2].images[0].get_array(), weights[2])
    figure.savefig(tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 1000


BAD_INPUTS = [
    pytest.param(
        lambda: plot_attention(np.ones(4)),
        ValueError,
        "plot_attention: `weights` must have shape (q_len, k_len) or (num_maps, q_len, k_len). Received: weights.shape=(4,)",
        id="attention-rank-1",
    ),
    pytest.param(
        lambda: plot_attention(np.ones((2, 2, 3, 3))),
        ValueError,
        "plot_attention: `weights` must have shape (q_len, k_len) or (num_maps, q_len, k_len). Received: weights.shape=(2, 2, 3, 3)",
        id="attention-rank-4",
    ),
    pytest.param(
        lambda: plot_attention(np.ones((2, 3)), key_tokens=["a", "b"]),
        ValueError,
        "plot_attention: `key_tokens` must have one label per position (3). Received: 2 labels",
        id="attention-key-labels",
    ),
    pytest.param(
        lambda: plot_position_encoding(table=np.ones(3)),
        ValueError,
        "plot_position_encoding: `table` must have shape (length, depth). Received: table.shape=(3,)",
        id="encoding-rank",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)


def test_missing_matplotlib_names_the_extra(monkeypatch):
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert_raises_with(
        lambda: plot_attention(np.ones((2, 2))),
        ImportError,
        "keras_attention's plotting functions need matplotlib, the optional `plot` extra: pip install 'keras-attention-layers[plot]'",
    )
