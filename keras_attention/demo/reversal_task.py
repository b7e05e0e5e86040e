"""The built-in task: reverse each sequence, generated in code.

Target at position `i` is the input at position `L - 1 - i`, `L` the
sequence's own length; sequences of varying length are padded with 0. Without
position information self-attention is permutation-equivariant, so a model
can only guess among the tokens present; with a position encoding it can
learn the task exactly.
"""

import numpy as np

from keras_attention import _checks as checks

_NAME = "make_reversal_data"


def make_reversal_data(
    num_sequences: int,
    max_length: int,
    vocab_size: int,
    min_length: int = 1,
    seed: int = 0,
):
    """Random token sequences and their reversals, padded with 0.

    Args:
        num_sequences: how many sequences.
        max_length: the padded length; each sequence has a length drawn
            uniformly from `[min_length, max_length]`.
        vocab_size: tokens are drawn from `1 .. vocab_size - 1`; 0 is padding.
        min_length: the shortest sequence.
        seed: seed of NumPy's generator; the same seed gives the same data.

    Returns:
        `(inputs, targets)`, two int32 arrays `(num_sequences, max_length)`.
    """
    checks.positive_int(num_sequences, "num_sequences", _NAME)
    checks.positive_int(max_length, "max_length", _NAME)
    checks.positive_int(min_length, "min_length", _NAME)
    checks.positive_int(vocab_size, "vocab_size", _NAME)
    if min_length > max_length:
        raise ValueError(
            f"{_NAME}: `min_length` must not exceed `max_length`. "
            f"Received: min_length={min_length}, max_length={max_length}"
        )
    if vocab_size < 2:
        raise ValueError(
            f"{_NAME}: `vocab_size` must be at least 2 (token 0 is padding). "
            f"Received: vocab_size={vocab_size}"
        )
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_length, max_length + 1, size=num_sequences)
    tokens = rng.integers(1, vocab_size, size=(num_sequences, max_length))
    positions = np.arange(max_length)
    real = positions[None, :] < lengths[:, None]
    inputs = np.where(real, tokens, 0)
    source = np.where(real, lengths[:, None] - 1 - positions[None, :], 0)
    targets = np.where(real, np.take_along_axis(inputs, source, axis=1), 0)
    return inputs.astype("int32"), targets.astype("int32")


def real_token_accuracy(logits, inputs, targets):
    """Fraction of real (non-padding) positions whose argmax is the target.

    Args:
        logits: `(batch, seq_len, vocab_size)` model outputs.
        inputs: `(batch, seq_len)` input tokens; 0 marks padding.
        targets: `(batch, seq_len)` target tokens.

    Returns:
        A Python float in `[0, 1]`; padding positions are not counted.
    """
    logits, inputs, targets = (np.asarray(a) for a in (logits, inputs, targets))
    real = inputs != 0
    if not real.any():
        raise ValueError(
            "real_token_accuracy: `inputs` holds no real (non-zero) token. "
            f"Received: inputs.shape={inputs.shape}"
        )
    predicted = logits.argmax(-1)
    return float((predicted[real] == targets[real]).mean())
