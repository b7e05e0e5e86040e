"""The demo: position information is what lets attention reverse a sequence.

Trains `build_toy_model` on the reversal task once per encoding, prints one
line per encoding with two accuracies: on held-out sequences of the training
lengths, and on longer ones (up to twice the longest seen in training), which
asks which encodings extrapolate. Saves the best model and reloads it in
safe mode, and draws the position encoding, the accuracy by length and the
best model's attention.
"""

import os
import sys
import time

import keras
import numpy as np

from keras_attention.demo.reversal_task import make_reversal_data, real_token_accuracy
from keras_attention.demo.toy_model import build_toy_model
from keras_attention.explain.weights import attention_weights

VOCAB_SIZE = 12
MAX_LENGTH = 10
MIN_LENGTH = 2
TRAIN_SIZE = 6000
TEST_SIZE = 1000
BATCH_SIZE = 64
# The demo's rows: a name for each `build_toy_model` encoding it compares.
ROWS = {
    "none": None,
    "sinusoidal": "sinusoidal",
    "learned": "learned",
    "rotary": "rotary",
    "alibi": "alibi",
}
# The second column: held-out sequences longer than any seen in training, up
# to this length. The models are built for it (the learned table has rows for
# these positions, which training never reaches).
LONGEST = 2 * MAX_LENGTH


def run_demo(
    output="demo-output", epochs=12, seed=0, train_size=TRAIN_SIZE, encodings=None
):
    """Runs the demo and returns `{encoding name: held-out accuracy}`.

    Args:
        output: folder for the saved model and the pictures.
        epochs: training epochs per encoding.
        seed: seed of the data, the initial weights and the shuffling; the
            same seed gives the same results.
        train_size: number of training sequences.
        encodings: the names of the `ROWS` to train, in `ROWS`' order (None:
            all of them).
    """
    names = list(ROWS) if encodings is None else encodings
    if isinstance(names, str) or not names or any(n not in ROWS for n in names):
        raise ValueError(
            f"run_demo: `encodings` must be a list of some of {list(ROWS)}. "
            f"Received: encodings={encodings!r}"
        )
    os.makedirs(output, exist_ok=True)
    train_x, train_y = make_reversal_data(
        train_size, MAX_LENGTH, VOCAB_SIZE, MIN_LENGTH, seed=seed
    )
    test_x, test_y = make_reversal_data(
        TEST_SIZE, MAX_LENGTH, VOCAB_SIZE, MIN_LENGTH, seed=seed + 1
    )
    long_x, long_y = make_reversal_data(
        TEST_SIZE, LONGEST, VOCAB_SIZE, MAX_LENGTH + 1, seed=seed + 2
    )
    print(
        f"Task: reverse sequences of {MIN_LENGTH}-{MAX_LENGTH} tokens "
        f"(vocabulary {VOCAB_SIZE - 1}, 0 = padding); {train_size} training "
        f"and {TEST_SIZE} held-out sequences, and {TEST_SIZE} longer ones "
        f"({MAX_LENGTH + 1}-{LONGEST} tokens) never seen in training."
    )
    # Keras' progress bar on a terminal; one line per epoch in a file or a
    # pipe, where the bar's redraws would be written out one after another.
    verbose = 1 if sys.stdout.isatty() else 2
    accuracy, longer, by_length, models = {}, {}, {}, {}
    for name, encoding in ROWS.items():
        if name not in names:
            continue
        print(f"\nTraining with position encoding: {name}")
        keras.utils.set_random_seed(seed)
        model = build_toy_model(VOCAB_SIZE, LONGEST, encoding=encoding)
        # Adam's variables, created now rather than in the first step: on
        # TensorFlow that step is otherwise traced twice (once creating them,
        # once using them), several seconds per model.
        model.optimizer.build(model.trainable_variables)
        start = time.perf_counter()
        model.fit(
            train_x, train_y, batch_size=BATCH_SIZE, epochs=epochs, verbose=verbose
        )
        logits = _predict(model, test_x)
        long_logits = _predict(model, long_x)
        accuracy[name] = real_token_accuracy(logits, test_x, test_y)
        longer[name] = real_token_accuracy(long_logits, long_x, long_y)
        by_length[name] = _accuracy_by_length(
            [(logits, test_x, test_y), (long_logits, long_x, long_y)]
        )
        models[name] = model
        print(f"{name}: {time.perf_counter() - start:.0f} s")

    print("\nHeld-out accuracy over real (non-padding) tokens")
    print(f"encoding    accuracy  longer ({MAX_LENGTH + 1}-{LONGEST} tokens)")
    for name, value in accuracy.items():
        print(f"{name:<10}  {100 * value:.1f}%  {100 * longer[name]:.1f}%")

    best = max(accuracy, key=accuracy.get)
    path = os.path.join(output, "best_model.keras")
    models[best].save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        _predict(restored, test_x), _predict(models[best], test_x), atol=1e-6
    )
    print(
        f"\nSaved the best model ({best}) to {path}; reloaded in safe mode, "
        "same predictions."
    )
    _draw(models[best], best, test_x, output)
    _draw_by_length(by_length, output)
    return accuracy


def _predict(model, tokens):
    """The logits of `tokens`, in one eager call of `model`.

    `model.predict` traces a predict function for each model, and one more
    for a last, shorter batch. TensorFlow counts the traces of all of them
    together (they share their Python code), so the demo's four models (the
    three trained ones and the reloaded one) printed "triggered tf.function
    retracing" warnings; and each trace took longer than this call on the
    held-out sequences.
    """
    return keras.ops.convert_to_numpy(model(tokens, training=False))


def _accuracy_by_length(sets):
    """`{length: accuracy over the real tokens of the sequences of that
    length}` from `(logits, inputs, targets)` sets."""
    result = {}
    for logits, inputs, targets in sets:
        lengths = (inputs != 0).sum(axis=1)
        for length in np.unique(lengths):
            rows = lengths == length
            result[int(length)] = real_token_accuracy(
                logits[rows], inputs[rows], targets[rows]
            )
    return dict(sorted(result.items()))


def _draw_by_length(by_length, output):
    from keras_attention.explain.plotting import new_figure

    figure = new_figure(figsize=(7, 4), layout="constrained")
    ax = figure.add_subplot()
    for name, values in by_length.items():
        ax.plot(
            list(values), [100 * v for v in values.values()], marker=".", label=name
        )
    ax.axvline(MAX_LENGTH + 0.5, color="grey", linestyle="--", linewidth=1)
    ax.text(MAX_LENGTH + 0.7, 86, "longer than any\ntraining sequence", color="grey")
    ax.set_xticks(range(MIN_LENGTH, LONGEST + 1, 2))
    ax.set_xlabel("sequence length (tokens)")
    ax.set_ylabel("held-out accuracy (%)")
    ax.set_ylim(0, 102)
    ax.set_title("Reversal accuracy by length, one line per position encoding")
    ax.legend(loc="lower left")
    path = os.path.join(output, "accuracy_by_length.png")
    figure.savefig(path, dpi=120)
    print(f"Accuracy by length: {path}")


def _draw(model, name, test_x, output):
    from keras_attention.explain.plotting import plot_attention, plot_position_encoding

    paths = [os.path.join(output, "position_encoding.png")]
    plot_position_encoding(length=64, depth=64).savefig(paths[0], dpi=120)
    example = test_x[:1]
    length = int((example[0] != 0).sum())
    tokens = [str(t) for t in example[0, :length]]
    for index, weights in enumerate(attention_weights(model, example[:, :length])):
        path = os.path.join(output, f"attention_layer_{index}.png")
        figure = plot_attention(
            weights[0],
            query_tokens=tokens,
            key_tokens=tokens,
            title=f"{name} model, block {index}: attention of each query",
        )
        figure.savefig(path, dpi=120)
        paths.append(path)
    print("Pictures: " + ", ".join(paths))
