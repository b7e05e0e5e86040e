"""The generation demo: a causal model learns to reverse a sequence after a
separator, then `generate` writes the answers, with and without the cache.

`python -m keras_attention demo --task generate` runs it. Tokens: 0 is
padding, 1 ends an answer, 2 separates the sequence from its answer, 3 and up
are the sequence's tokens. A training example is `sequence, 2, reversed
sequence, 1`; the loss counts the answer only. The prompt of a held-out
example is `sequence, 2`, and an answer is right when every generated token
up to the end token matches.
"""

import sys
import time

import keras
import numpy as np

from keras_attention.demo.toy_model import build_toy_model
from keras_attention.generation import generate

END, SEPARATOR, FIRST_TOKEN = 1, 2, 3
VOCAB_SIZE = 10
MIN_LENGTH, MAX_LENGTH = 2, 6
TEST_SIZE = 200
BATCH_SIZE = 64
# The full run and the `--quick` one (the test's: it checks the output's
# format and that the cache changes no token, not the accuracy).
FULL = {"train_size": 8000, "epochs": 12, "d_model": 64, "num_layers": 2}
QUICK = {"train_size": 256, "epochs": 1, "d_model": 16, "num_layers": 1}


def make_generation_data(num_sequences, seed=0):
    """`(prompts, answers)`: int32 `(n, MAX_LENGTH + 1)` prompts (a sequence
    and the separator, right-padded with 0) and `(n, MAX_LENGTH + 1)`
    answers (the reversed sequence and the end token, padded)."""
    rng = np.random.default_rng(seed)
    prompts = np.zeros((num_sequences, MAX_LENGTH + 1), dtype="int32")
    answers = np.zeros((num_sequences, MAX_LENGTH + 1), dtype="int32")
    for row in range(num_sequences):
        length = rng.integers(MIN_LENGTH, MAX_LENGTH + 1)
        sequence = rng.integers(FIRST_TOKEN, VOCAB_SIZE, size=length)
        prompts[row, : length + 1] = [*sequence, SEPARATOR]
        answers[row, : length + 1] = [*sequence[::-1], END]
    return prompts, answers


def _training_arrays(prompts, answers):
    """Next-token inputs, targets and weights (1 on the answer's tokens)."""
    n, width = prompts.shape
    full = np.zeros((n, 2 * width), dtype="int32")
    weights = np.zeros((n, 2 * width - 1), dtype="float32")
    for row in range(n):
        prompt = prompts[row][prompts[row] != 0]
        answer = answers[row][answers[row] != 0]
        sequence = np.concatenate([prompt, answer])
        full[row, : len(sequence)] = sequence
        # Target t is token t + 1: the answer's targets start at the
        # separator's position.
        weights[row, len(prompt) - 1 : len(sequence) - 1] = 1.0
    return full[:, :-1], full[:, 1:], weights


def run_generation_demo(seed=0, quick=False, **overrides):
    """Trains the causal toy model, generates the held-out answers with and
    without the cache, prints the figures and returns them as a dict:
    `accuracy`, `identical`, `cached_tokens_per_second`,
    `uncached_tokens_per_second`."""
    preset = dict(QUICK if quick else FULL, **overrides)
    keras.utils.set_random_seed(seed)
    train_prompts, train_answers = make_generation_data(preset["train_size"], seed)
    test_prompts, test_answers = make_generation_data(
        TEST_SIZE // 8 if quick else TEST_SIZE, seed + 1
    )
    print(
        f"Task: a sequence of {MIN_LENGTH}-{MAX_LENGTH} tokens, a separator, "
        f"then the sequence reversed and an end token; {preset['train_size']} "
        f"training and {len(test_prompts)} held-out sequences."
    )
    model = build_toy_model(
        VOCAB_SIZE,
        2 * (MAX_LENGTH + 1),
        d_model=preset["d_model"],
        num_heads=4,
        num_layers=preset["num_layers"],
        encoding="learned",
        causal=True,
    )
    inputs, targets, weights = _training_arrays(train_prompts, train_answers)
    model.optimizer.build(model.trainable_variables)
    start = time.perf_counter()
    model.fit(
        inputs,
        targets,
        sample_weight=weights,
        batch_size=BATCH_SIZE,
        epochs=preset["epochs"],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    print(f"Training: {time.perf_counter() - start:.0f} s")

    new_tokens = MAX_LENGTH + 1
    outputs, rates = {}, {}
    for use_cache in (True, False):
        start = time.perf_counter()
        outputs[use_cache] = generate(
            model, test_prompts, new_tokens, end_token=END, use_cache=use_cache
        )
        seconds = time.perf_counter() - start
        rates[use_cache] = len(test_prompts) * new_tokens / seconds
    lengths = (test_prompts != 0).sum(1)
    generated = np.stack(
        [row[n : n + new_tokens] for row, n in zip(outputs[True], lengths, strict=True)]
    )
    accuracy = float(np.mean(np.all(generated == test_answers, axis=1)))
    identical = bool(np.array_equal(outputs[True], outputs[False]))
    print("\nGreedy answers to the held-out prompts")
    print(f"exact match: {100 * accuracy:.1f}%")
    print(f"cached and uncached outputs identical: {'yes' if identical else 'NO'}")
    print(
        f"tokens per second (one generate call each, compilation included): "
        f"cached {rates[True]:.0f}, uncached {rates[False]:.0f}"
    )
    return {
        "accuracy": accuracy,
        "identical": identical,
        "cached_tokens_per_second": rates[True],
        "uncached_tokens_per_second": rates[False],
    }
