import numpy as np
import pytest

from keras_attention import make_reversal_data, real_token_accuracy
from tests.layer_test_case import assert_raises_with


def test_targets_reverse_each_sequence_within_its_own_length():
    inputs, targets = make_reversal_data(50, 9, 7, min_length=2, seed=4)
    assert inputs.shape == targets.shape == (50, 9)
    assert inputs.dtype == targets.dtype == np.int32
    lengths = (inputs != 0).sum(1)
    assert lengths.min() >= 2 and lengths.max() <= 9 and len(set(lengths)) > 3
    for row, target, length in zip(inputs, targets, lengths, strict=True):
        assert np.all(row[:length] > 0) and np.all(row[length:] == 0)
        np.testing.assert_array_equal(target[:length], row[:length][::-1])
        assert np.all(target[length:] == 0)
    assert inputs.max() <= 6


def test_same_seed_same_data_other_seed_other_data():
    a = make_reversal_data(20, 6, 5, seed=1)
    b = make_reversal_data(20, 6, 5, seed=1)
    c = make_reversal_data(20, 6, 5, seed=2)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_accuracy_counts_real_tokens_only():
    inputs = np.array([[1, 2, 0, 0]])
    targets = np.array([[2, 1, 0, 0]])
    logits = np.zeros((1, 4, 3))
    logits[0, 0, 2] = 1  # right
    logits[0, 1, 2] = 1  # wrong
    logits[0, 2:, 1] = 1  # padding, wrong but not counted
    assert real_token_accuracy(logits, inputs, targets) == 0.5


BAD_INPUTS = [
    pytest.param(
        lambda: make_reversal_data(0, max_length=4, vocab_size=5),
        ValueError,
        "make_reversal_data: `num_sequences` must be a positive integer. Received: num_sequences=0",
        id="num-sequences-zero",
    ),
    pytest.param(
        lambda: make_reversal_data(3, max_length=4, vocab_size=1),
        ValueError,
        "make_reversal_data: `vocab_size` must be at least 2 (token 0 is padding). Received: vocab_size=1",
        id="vocab-size-one",
    ),
    pytest.param(
        lambda: make_reversal_data(3, max_length=4, vocab_size=5, min_length=6),
        ValueError,
        "make_reversal_data: `min_length` must not exceed `max_length`. Received: min_length=6, max_length=4",
        id="min-length-above-max-length",
    ),
    pytest.param(
        lambda: real_token_accuracy(
            np.zeros((1, 2, 3)), np.zeros((1, 2)), np.zeros((1, 2))
        ),
        ValueError,
        "real_token_accuracy: `inputs` holds no real (non-zero) token. Received: inputs.shape=(1, 2)",
        id="accuracy-no-real-token",
    ),
]


@pytest.mark.parametrize("call,error,message", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(call, error, message):
    assert_raises_with(call, error, message)
