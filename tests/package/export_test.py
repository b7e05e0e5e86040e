"""Serving: SavedModel export and TensorFlow Lite (builtin ops only)."""

import numpy as np
import pytest

import keras_attention
from keras_attention import ops as attention_ops
from tests.layer_test_case import perturbed

pytestmark = pytest.mark.tensorflow_only  # SavedModel and TFLite are TensorFlow's

SHAPES = [(1, 10), (3, 7), (5, 4), (2, 1)]


@pytest.fixture(scope="module", params=["sinusoidal", "learned", None])
def exported(request, tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    # tile_size=0: the full computation, which a model meant for TensorFlow
    # Lite needs, since its length is unknown when exported (see
    # docs/guides/serving-and-export.md).
    model = keras_attention.build_toy_model(
        12, 10, d_model=16, num_heads=2, encoding=request.param, tile_size=0
    )
    tokens, _ = keras_attention.make_reversal_data(64, 10, 12, min_length=2)
    perturbed(model)
    path = str(tmp_path_factory.mktemp("export") / "saved_model")
    model.export(path, verbose=False)
    return model, path, tokens


def test_saved_model_serves_the_same_predictions(exported):
    import tensorflow as tf

    model, path, tokens = exported
    reloaded = tf.saved_model.load(path)  # keep it: it owns the variables
    for batch, length in SHAPES:
        x = tokens[:batch, :length]
        np.testing.assert_allclose(
            reloaded.serve(tf.constant(x)).numpy(),
            model.predict(x, verbose=0),
            atol=1e-5,
        )


def test_tflite_with_builtin_ops_only_matches(exported):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    model, path, tokens = exported
    converter = tf.lite.TFLiteConverter.from_saved_model(path)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())
    (inputs,) = interpreter.get_input_details()
    (outputs,) = interpreter.get_output_details()
    for batch, length in SHAPES:
        x = tokens[:batch, :length].astype(inputs["dtype"])
        interpreter.resize_tensor_input(inputs["index"], [batch, length])
        interpreter.allocate_tensors()
        interpreter.set_tensor(inputs["index"], x)
        interpreter.invoke()
        # Every position, padding included: fully masked rows must agree too.
        np.testing.assert_allclose(
            interpreter.get_tensor(outputs["index"]),
            model.predict(x, verbose=0),
            atol=1e-4,
        )


def test_tflite_with_builtin_ops_only_runs_rotary_and_alibi(tmp_path, monkeypatch):
    # One model holding every option a TensorFlow Lite conversion must
    # handle: a rotary embedding (interleaved, partial, dynamic scaling,
    # whose base depends on the run-time length) and ALiBi, in a causal
    # block.
    import keras
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from keras_attention._backend import tensorflow as tensorflow_backend

    keras.utils.set_random_seed(0)
    rope = keras_attention.RotaryEmbedding(
        layout="interleaved",
        rotary_dim=6,
        scaling={
            "rope_type": "dynamic",
            "factor": 2.0,
            "original_max_position_embeddings": 4,
        },
    )
    model = keras.Sequential([keras.Input((None,), dtype="int32")])
    model.add(keras.layers.Embedding(12, 16, mask_zero=True))
    model.add(
        keras_attention.TransformerBlock(
            num_heads=2,
            intermediate_dim=16,
            causal=True,
            alibi=True,
            rotary_embedding=rope,
            tile_size=0,
        )
    )
    model.add(keras.layers.Dense(12))
    path = str(tmp_path / "saved_model")
    model.export(path, verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(path)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())
    (inputs,) = interpreter.get_input_details()
    (outputs,) = interpreter.get_output_details()
    tokens, _ = keras_attention.make_reversal_data(4, 10, 12, min_length=2)
    for batch, length in [(2, 3), (3, 10)]:  # within and past the original length
        x = tokens[:batch, :length].astype(inputs["dtype"])
        interpreter.resize_tensor_input(inputs["index"], [batch, length])
        interpreter.allocate_tensors()
        interpreter.set_tensor(inputs["index"], x)
        interpreter.invoke()
        np.testing.assert_allclose(
            interpreter.get_tensor(outputs["index"]),
            model.predict(x, verbose=0),
            atol=1e-4,
        )

    # The same model exported for one length past the tiling threshold
    # (batch · heads · T² >= 2**22, where `tile_size=None` would tile, and
    # the tile loops do not convert): tile_size=0 keeps the full path. The
    # export traces outside XLA, whose threshold is lowered to 2**22 here to
    # keep the length small.
    monkeypatch.setattr(
        tensorflow_backend,
        "OUTSIDE_XLA_TILED_FROM_LOGITS",
        attention_ops.TILED_FROM_LOGITS,
    )
    length = 1536
    assert 2 * length**2 >= attention_ops.TILED_FROM_LOGITS
    path = str(tmp_path / "saved_model_long")
    model.export(
        path,
        verbose=False,
        input_signature=[tf.TensorSpec((1, length), tf.int32)],
    )
    converter = tf.lite.TFLiteConverter.from_saved_model(path)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    (inputs,) = interpreter.get_input_details()
    (outputs,) = interpreter.get_output_details()
    x = np.resize(tokens[0], (1, length)).astype(inputs["dtype"])
    interpreter.set_tensor(inputs["index"], x)
    interpreter.invoke()
    np.testing.assert_allclose(
        interpreter.get_tensor(outputs["index"]),
        model.predict(x, verbose=0),
        atol=1e-4,
    )
