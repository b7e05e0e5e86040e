"""Command line: `python -m keras_attention demo` (or `keras-attention demo`)."""

import argparse


def main(argv=None):
    parser = argparse.ArgumentParser(prog="keras-attention")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run the tutorial's example, fixed")
    parser.parse_args(argv)

    import keras

    from keras_attention import scaled_dot_product_attention

    # The tutorial's example: three positions of depth 10, no batch axis.
    query = keras.random.normal((3, 10), seed=1)
    key = keras.random.normal((3, 10), seed=2)
    value = keras.random.normal((3, 10), seed=3)
    context, weights = scaled_dot_product_attention(
        query, key, value, return_weights=True
    )
    print("context (3, 10):")
    print(keras.ops.convert_to_numpy(context).round(3))
    print("weights (3, 3), each row sums to 1:")
    print(keras.ops.convert_to_numpy(weights).round(3))


if __name__ == "__main__":
    main()
