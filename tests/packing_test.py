"""`keras_attention/packing.py`: documents packed into rows, whole, with
segment ids, per-document positions and a loss mask."""

import numpy as np
import pytest

from keras_attention import pack_sequences
from tests.layer_test_case import assert_raises_with

DOCUMENTS = [np.arange(1, 1 + n) * (i + 1) for i, n in enumerate([5, 3, 7, 2, 9, 1, 4])]


def unpack(packed):
    """The documents of each row, in order, from the ids and the mask."""
    found = []
    for tokens, ids, mask in zip(
        packed["tokens"], packed["segment_ids"], packed["mask"], strict=True
    ):
        for segment in np.unique(ids[mask]):
            found.append(tokens[mask & (ids == segment)])
    return found


def test_every_document_is_in_one_row_whole_with_its_own_positions():
    packed = pack_sequences(DOCUMENTS, 10)
    assert packed["tokens"].shape == (4, 10)
    assert {tuple(d) for d in unpack(packed)} == {tuple(d) for d in DOCUMENTS}
    # Ids never decrease along a row; positions count from each document's
    # start; the padding is pad_id and masked out.
    assert (np.diff(packed["segment_ids"], axis=-1) >= 0).all()
    for row in range(4):
        ids, positions = packed["segment_ids"][row], packed["positions"][row]
        for segment in np.unique(ids):
            np.testing.assert_array_equal(
                positions[ids == segment], np.arange((ids == segment).sum())
            )
    np.testing.assert_array_equal(packed["tokens"][~packed["mask"]], 0)
    assert packed["mask"].sum() == sum(len(d) for d in DOCUMENTS)


def test_first_fit_fills_earlier_rows_and_long_documents_are_cut():
    packed = pack_sequences([[1] * 6, [2] * 6, [3] * 4, [4] * 13], 10, pad_id=-1)
    # [1]*6 + [3]*4 fill row 0; [2]*6 starts row 1; 13 tokens become 10 + 3.
    assert packed["tokens"][0].tolist() == [1] * 6 + [3] * 4
    assert packed["tokens"][1].tolist() == [2] * 6 + [4] * 3 + [-1]
    assert packed["tokens"][2].tolist() == [4] * 10
    assert packed["segment_ids"][1].tolist() == [1] * 6 + [2] * 3 + [3]


BAD_INPUTS = [
    pytest.param(
        lambda: pack_sequences([[1, 2], []], 4),
        ValueError,
        "pack_sequences: each document must be a non-empty 1-D sequence of "
        "int tokens. Received: document 1 with shape (0,) and dtype float64",
        id="empty-document",
    ),
    pytest.param(
        lambda: pack_sequences([[1.5, 2.0]], 4),
        ValueError,
        "pack_sequences: each document must be a non-empty 1-D sequence of "
        "int tokens. Received: document 0 with shape (2,) and dtype float64",
        id="float-tokens",
    ),
    pytest.param(
        lambda: pack_sequences([[1, 2]], 0),
        ValueError,
        "pack_sequences: `length` must be a positive integer. Received: length=0",
        id="length-zero",
    ),
    pytest.param(
        lambda: pack_sequences([[1, 2]], 4, pad_id=0.5),
        TypeError,
        "pack_sequences: `pad_id` must be an int. Received: pad_id=0.5",
        id="pad-id-float",
    ),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)
