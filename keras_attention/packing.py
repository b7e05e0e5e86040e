"""Packing documents into rows of one length, for training on `segment_ids`."""

import numpy as np

from keras_attention import _checks as checks

_NAME = "pack_sequences"


def pack_sequences(documents, length: int, *, pad_id: int = 0):
    """Packs token sequences into rows of `length`, each document whole.

    Documents are placed in order, each in the first row with room for it
    (first fit), so rows fill up with little padding and no document is cut
    across rows. A document longer than `length` is cut into pieces of
    `length` (the last one shorter), each packed as a document of its own.
    Attention with the returned `segment_ids` sees only within a document,
    so the rows compute what the documents would alone (with `positions`
    for a rotary embedding; `chunk_size` and `prefix_length` count along the
    row, not the document), at the cost of `sum(len(d)²)` rather than
    `length²` per row in tiles.

    Args:
        documents: an iterable of 1-D sequences of int tokens (lists or
            NumPy arrays), none empty.
        length: the length of a row, a positive int.
        pad_id: the token that fills the end of a row (0, the padding token
            of `Embedding(mask_zero=True)`, by default).

    Returns:
        A dict of int32 NumPy arrays `(rows, length)`:

        - `"tokens"`: the documents, then `pad_id`;
        - `"segment_ids"`: 1, 2, ... for the documents of a row in order,
          and one more for the padding at its end: they never decrease along
          a row, which lets the tiled attention skip every tile between
          documents exactly;
        - `"positions"`: each token's position in its document (0 at its
          first token, for a rotary embedding's `positions`), 0 .. on the
          padding;
        - `"mask"` (bool): True at the documents' tokens, False at padding,
          for a loss that skips the padding (`sample_weight`).

    Example:

    >>> packed = keras_attention.pack_sequences([[5, 6, 7], [8, 9], [4]], 4)
    >>> packed["tokens"].tolist()
    [[5, 6, 7, 4], [8, 9, 0, 0]]
    >>> packed["segment_ids"].tolist()
    [[1, 1, 1, 2], [1, 1, 2, 2]]
    >>> packed["positions"].tolist()
    [[0, 1, 2, 0], [0, 1, 0, 1]]
    """
    length = checks.positive_int(length, "length", _NAME)
    if not checks.is_integer(pad_id):
        raise TypeError(
            f"{_NAME}: `pad_id` must be an int. Received: pad_id={pad_id!r}"
        )
    pieces = []
    for index, document in enumerate(documents):
        tokens = np.asarray(document)
        if tokens.ndim != 1 or tokens.size == 0 or tokens.dtype.kind not in "iu":
            raise ValueError(
                f"{_NAME}: each document must be a non-empty 1-D sequence of "
                f"int tokens. Received: document {index} with shape "
                f"{tokens.shape} and dtype {tokens.dtype}"
            )
        pieces.extend(
            tokens[start : start + length] for start in range(0, tokens.size, length)
        )
    rows = []  # the pieces of each row
    room = []  # the free positions at the end of each row
    for piece in pieces:
        for row, free in enumerate(room):
            if free >= piece.size:
                rows[row].append(piece)
                room[row] -= piece.size
                break
        else:
            rows.append([piece])
            room.append(length - piece.size)
    shape = (len(rows), length)
    packed = {
        "tokens": np.full(shape, pad_id, "int32"),
        "segment_ids": np.zeros(shape, "int32"),
        "positions": np.zeros(shape, "int32"),
        "mask": np.zeros(shape, bool),
    }
    for row, row_pieces in enumerate(rows):
        start = 0
        for segment, piece in enumerate(row_pieces, start=1):
            stop = start + piece.size
            packed["tokens"][row, start:stop] = piece
            packed["segment_ids"][row, start:stop] = segment
            packed["positions"][row, start:stop] = np.arange(piece.size)
            packed["mask"][row, start:stop] = True
            start = stop
        packed["segment_ids"][row, start:] = len(row_pieces) + 1
        packed["positions"][row, start:] = np.arange(length - start)
    return packed
