"""Command line: `python -m keras_attention demo` (or `keras-attention demo`)."""

import argparse


def _positive(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keras-attention")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="train the toy model with and without position encoding"
    )
    demo.add_argument("--output", default="demo-output", help="folder for results")
    demo.add_argument("--epochs", type=_positive, default=15)
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from keras_attention.demo import run_demo

    run_demo(output=args.output, epochs=args.epochs, seed=args.seed)


if __name__ == "__main__":
    main()
