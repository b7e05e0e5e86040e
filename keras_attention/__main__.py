"""Command line: `python -m keras_attention demo` (or `keras-attention demo`).

The arguments are parsed, and the output folder checked, before Keras is
imported: `--help`, `--version`, a mistyped option or an unusable folder get
their answer at once, not after seconds of importing TensorFlow (see
`_command_line_is_starting` in `__init__.py`).
"""

import argparse
import glob
import os
import tempfile

from keras_attention import __version__

# The full demo, which README's table shows, and `--quick`, which the demo
# test runs: 56 % of its training steps. With it sinusoidal and learned
# reach 100.0% for seeds 0, 1 and 2; 8 epochs already gave >= 99% for each
# of them (learned 99.2% for seed 2), the last two are a margin for other
# machines. Written here, not imported from the demo's module, so that
# `--help` needs no Keras; tests/main_test.py checks FULL against run_demo.
FULL = {"train_size": 6000, "epochs": 12}
QUICK = {"train_size": 4000, "epochs": 10}
# The demo's rows (`ROWS` of keras_attention/demo/reversal_demo.py, which the
# tests compare).
ENCODINGS = ("none", "sinusoidal", "learned", "rotary", "alibi")
# What the demo writes into its output folder (demo/reversal_demo.py).
OUTPUTS = (
    "best_model.keras",
    "position_encoding.png",
    "attention_layer_*.png",
    "accuracy_by_length.png",
)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _parsers():
    parser = argparse.ArgumentParser(
        prog="keras-attention",
        description="Attention and position-encoding layers for Keras 3.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="train the toy model with and without position encoding",
        description=(
            "Trains the toy model to reverse sequences once with no position "
            "encoding and once with each of the sinusoidal, learned, rotary "
            "and ALiBi ones, prints the held-out accuracy of each on the "
            "training lengths and on longer sequences, saves the best model "
            "and draws its attention."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    demo.add_argument(
        "--task",
        choices=("table", "generate"),
        default="table",
        help="table: the reversal task with each position encoding; generate: "
        "a causal model answers prompts with keras_attention.generate, with "
        "and without the key/value cache",
    )
    demo.add_argument(
        "--output",
        default="demo-output",
        metavar="DIR",
        help="folder for the saved model and the pictures; created if missing",
    )
    demo.add_argument(
        "--epochs",
        type=_positive_int,
        # No default here, so that --quick can choose it; the help says it.
        default=argparse.SUPPRESS,
        metavar="N",
        help=(
            f"training epochs per encoding (default: {FULL['epochs']}, "
            f"or {QUICK['epochs']} with --quick)"
        ),
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of the data, the initial weights and the shuffling; "
        "the same seed gives the same accuracies",
    )
    demo.add_argument(
        "--encodings",
        nargs="+",
        choices=ENCODINGS,
        default=argparse.SUPPRESS,
        metavar="NAME",
        help=(
            f"the encodings to train and compare, some of {', '.join(ENCODINGS)} "
            "(default: all of them)"
        ),
    )
    demo.add_argument(
        "--quick",
        action="store_true",
        help=(
            f"a shorter run: {QUICK['train_size']} training sequences and "
            f"{QUICK['epochs']} epochs instead of {FULL['train_size']} and "
            f"{FULL['epochs']}: about half the training steps"
        ),
    )
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the files of an earlier demo in the output folder; "
        "without it such a folder is refused",
    )
    return parser, demo


def _prepare_output(folder, overwrite):
    """Creates `folder` and checks that the demo can write there, before any
    training. Returns the files of an earlier demo found in it; raises
    `OSError` with a message for the user."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(f"{folder!r} exists and is not a folder")
    found = []
    if os.path.isdir(folder):
        found = sorted(
            name for pattern in OUTPUTS for name in glob.glob(pattern, root_dir=folder)
        )
    if found and not overwrite:
        raise FileExistsError(
            f"{folder!r} already holds the files of a demo ({', '.join(found)}); "
            "pass --overwrite to replace them, or choose another folder"
        )
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise OSError(
            f"cannot create the folder {folder!r}: {error.strerror}"
        ) from None
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise OSError(
            f"cannot write in the folder {folder!r}: {error.strerror}"
        ) from None
    return found


def main(argv=None):
    parser, demo_parser = _parsers()
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL
    if args.task == "generate":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from keras_attention.demo.generation_demo import run_generation_demo

        overrides = {"epochs": args.epochs} if hasattr(args, "epochs") else {}
        run_generation_demo(seed=args.seed, quick=args.quick, **overrides)
        return
    try:
        replaced = _prepare_output(args.output, args.overwrite)
    except OSError as error:
        demo_parser.error(f"argument --output: {error}")
    if replaced:
        print(f"Replacing the earlier demo's {', '.join(replaced)} in {args.output}.")

    # The command line is an application, so it may choose TensorFlow's C++
    # log level: 2 hides INFO and WARNING lines, as `make demo` and the tests
    # do. It only takes effect before TensorFlow is imported (under `-m`).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from keras_attention.demo.reversal_demo import run_demo

    run_demo(
        output=args.output,
        epochs=getattr(args, "epochs", preset["epochs"]),
        seed=args.seed,
        train_size=preset["train_size"],
        encodings=[
            name for name in ENCODINGS if name in getattr(args, "encodings", ENCODINGS)
        ],
    )


if __name__ == "__main__":
    main()
