import sys

import numpy as np
import pytest

from keras_attention import plot_attention, plot_position_encoding, sinusoidal_table
from tests.layer_test_case import assert_raises_with


def test_position_encoding_picture_shows_the_table():
    figure = plot_position_encoding(length=20, depth=8)
    image = figure.axes[0].images[0]
    np.testing.assert_allclose(image.get_array(), sinusoidal_table(20, 8), atol=1e-6)
    table = np.arange(6.0).reshape(3, 2)
    figure = plot_position_encoding(table=table)
    np.testing.assert_array_equal(figure.axes[0].images[0].get_array(), table)


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
