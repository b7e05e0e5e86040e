"""What the test files share: the layer test, bad-input checks, random data.

`run_layer_test` checks, in order: the config round trip, `build` with the
exact number of weights, the symbolic call (shape equal to the expected one
and to `compute_output_shape`), the eager call (shape and dtype), one `fit`
step, mixed precision (`mixed_float16`, `mixed_bfloat16`: outputs in the
compute dtype, weights in float32, values close to float32), and `.keras`
save -> load with `safe_mode=True` giving equal outputs.

`assert_raises_with` checks one bad input: each test file holds the bad
inputs of its module in a table `BAD_INPUTS` of named rows
`pytest.param(call, error_type, message, id=...)`.

`RNG`, `normal`, `symbolic` and `to_numpy` make and read test data,
`compiled` runs a function under `jax.jit` on JAX;
`jax_only` and `HAS_FLOAT64` say what the backend runs. `conftest.py`
restarts `RNG` before every test, so a test draws the same numbers alone or
in the whole suite.
"""

import re

import keras
import numpy as np
import pytest

MIXED_TOLERANCE = {"mixed_float16": 2e-2, "mixed_bfloat16": 1e-1}
RNG = np.random.default_rng(0)
jax_only = pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="needs the JAX backend"
)


def _has_float64():
    """JAX computes in float64 only with `jax_enable_x64`."""
    if keras.backend.backend() != "jax":
        return True
    import jax

    return bool(jax.config.jax_enable_x64)


HAS_FLOAT64 = _has_float64()


def restart_rng(seed=0):
    """Restarts `RNG` in place (the modules that imported it keep it)."""
    RNG.bit_generator.state = np.random.default_rng(seed).bit_generator.state


def normal(*shape, dtype="float32"):
    return RNG.normal(size=shape).astype(dtype)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def compiled(function):
    """`function` under `jax.jit` on JAX, whose op-by-op eager calls compile
    a program for every op and shape; as it is elsewhere. Worth it where a
    test's shapes are its own: the ops of shapes many tests share are
    compiled once per session anyway."""
    if keras.backend.backend() != "jax":
        return function
    import jax

    return jax.jit(function)


def perturbed(model, scale=0.1):
    """`model` as training would leave it, without training (a test session
    trains at most one model): noise added to every weight, so that no
    initializer gives them, and a compiled model's optimizer built (else
    Keras warns on reloading that the saved optimizer has fewer
    variables)."""
    rng = np.random.default_rng(1)
    model.set_weights(
        [w + rng.normal(0, scale, w.shape).astype(w.dtype) for w in model.get_weights()]
    )
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:
        optimizer.build(model.trainable_variables)
    return model


def symbolic(*shape, dtype="float32"):
    """A `keras.Input` with the full shape, batch size included."""
    return keras.Input(batch_shape=shape, dtype=dtype)


def raised_message(error):
    """The message a bad input's check wrote, without what wraps it.

    Keras wraps an error raised inside a layer's `call` ("Exception
    encountered when calling ..."): the message is the part it prints in
    bold. A TensorFlow run-time assertion (`InvalidArgumentError`) adds the
    function and node names: the message is what follows
    `assertion failed: ` on its line, each piece in brackets.
    """
    text = str(error)
    wrapped = re.search(
        r"Exception encountered when calling .*?\x1b\[1m(.*?)\x1b\[0m", text, re.S
    )
    if wrapped:
        return wrapped.group(1)
    assertion = re.search(r"assertion failed: (.*)", text)
    return assertion.group(1) if assertion else text


def assert_raises_with(call, error_type, message):
    """Checks that `call()` raises exactly `error_type` (not a subclass, not a
    backend's error) with exactly `message` (see `raised_message`)."""
    with pytest.raises(Exception) as caught:
        call()
    raised = caught.value
    assert type(raised) is error_type, (
        f"{type(raised).__module__}.{type(raised).__name__}: {raised}"
    )
    assert raised_message(raised) == message


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    expected_output_shape,
    expected_num_trainable_weights,
    expected_num_non_trainable_weights=0,
    call_kwargs=None,
    run_training=True,
    run_mixed_precision=True,
    *,
    tmp_path,
):
    """Runs the shared checks on `layer_cls(**init_kwargs)`.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        input_data: a NumPy array (the only input), or a dict of NumPy arrays
            keyed by call argument name (`{"query": q, "value": v}`).
        expected_output_shape: the output shape for `input_data`.
        expected_num_trainable_weights: exact count after `build`.
        expected_num_non_trainable_weights: exact count after `build`.
        call_kwargs: extra non-tensor call arguments.
        run_training: run one `fit` step.
        run_mixed_precision: run the mixed-precision checks.
        tmp_path: a folder for the `.keras` file (pytest's `tmp_path`).
    """
    inputs = input_data if isinstance(input_data, dict) else {None: input_data}
    call_kwargs = dict(call_kwargs or {})
    expected_output_shape = tuple(expected_output_shape)

    def call(layer, tensors, **extra):
        positional = [tensors[None]] if None in tensors else []
        named = {k: v for k, v in tensors.items() if k is not None}
        return layer(*positional, **named, **call_kwargs, **extra)

    # 1. Config round trip, directly and through Keras' serialization.
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    assert layer_cls.from_config(config).get_config() == config
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert type(revived) is layer_cls
    assert revived.get_config() == config

    # 2. Build creates exactly the expected weights.
    shapes = {k: v.shape for k, v in inputs.items()}
    if None in shapes:
        layer.build(shapes[None])
    else:
        layer.build(**{f"{k}_shape": v for k, v in shapes.items()})
    assert layer.built
    assert len(layer.trainable_weights) == expected_num_trainable_weights
    assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights

    # 3. Symbolic call: the shape Keras infers and `compute_output_shape`.
    symbolic = {
        k: keras.Input(shape=v.shape[1:], dtype=str(v.dtype), name=k or "input")
        for k, v in inputs.items()
    }
    layer = layer_cls(**init_kwargs)
    symbolic_output = call(layer, symbolic)
    expected_symbolic = (None,) + expected_output_shape[1:]
    assert tuple(symbolic_output.shape) == expected_symbolic
    if None in symbolic:
        computed = layer.compute_output_shape(symbolic[None].shape)
    else:
        computed = layer.compute_output_shape(
            **{f"{k}_shape": v.shape for k, v in symbolic.items()}
        )
    assert tuple(computed) == expected_symbolic

    # 4. Eager call: shape and dtype.
    eager_layer = layer_cls(**init_kwargs)
    output = call(eager_layer, inputs)
    assert tuple(output.shape) == expected_output_shape
    assert keras.backend.standardize_dtype(output.dtype) == eager_layer.compute_dtype

    symbolic_list = list(symbolic.values())
    numeric_list = [inputs[k] for k in symbolic]
    if len(symbolic_list) == 1:
        symbolic_list, numeric_list = symbolic_list[0], numeric_list[0]
    model = keras.Model(symbolic_list, symbolic_output)

    # 5. One training step.
    if run_training:
        target = np.random.default_rng(0).normal(size=expected_output_shape)
        model.compile(optimizer="sgd", loss="mse")
        history = model.fit(
            numeric_list, target, epochs=1, batch_size=len(target), verbose=0
        )
        assert np.isfinite(history.history["loss"][0])

    # 6. Mixed precision: compute dtype out, float32 weights, close values.
    if run_mixed_precision:
        reference = layer_cls(**init_kwargs)
        reference_output = keras.ops.convert_to_numpy(call(reference, inputs))
        for policy, tolerance in MIXED_TOLERANCE.items():
            mixed = layer_cls(**init_kwargs, dtype=policy)
            call(mixed, inputs)
            mixed.set_weights(reference.get_weights())
            mixed_output = call(mixed, inputs)
            compute_dtype = policy.split("_")[1]
            assert keras.backend.standardize_dtype(mixed_output.dtype) == compute_dtype
            for weight in mixed.weights:
                assert keras.backend.standardize_dtype(weight.dtype) == "float32"
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(keras.ops.cast(mixed_output, "float32")),
                reference_output,
                atol=tolerance,
                rtol=tolerance,
            )

    # 7. Save and load in safe mode: equal outputs.
    path = str(tmp_path / f"{layer_cls.__name__}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        loaded.predict(numeric_list, verbose=0),
        model.predict(numeric_list, verbose=0),
        atol=1e-6,
    )
    return output
