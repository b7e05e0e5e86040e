"""Autoregressive decoding: `generate`, greedy or sampled, with a key/value
cache or without one (the reference).

The decoding runs as one compiled loop (`keras.ops.while_loop`, inside
`tf.function(jit_compile=True)` on TensorFlow and `jax.jit` on JAX; a Python
loop on PyTorch), with the caches of every attention layer as loop variables.
Random draws come from the package's own counter-based hash (the one that
drives dropout), so a seed gives the same draws on every backend.
"""

import math
import random
import weakref

import keras
import numpy as np
from keras import ops

from keras_attention import _attention_pattern as pattern
from keras_attention import _backend
from keras_attention import _checks as checks
from keras_attention.layers.learned_position_embedding import (
    LearnedPositionEmbedding,
)
from keras_attention.layers.multi_head_attention import MultiHeadAttention
from keras_attention.layers.sinusoidal_position_encoding import (
    SinusoidalPositionEncoding,
)
from keras_attention.layers.transformer_block import TransformerBlock

SAMPLERS = ("greedy", "random", "top_k", "top_p")
_NAME = "generate"
# Layers that work on each position alone: they need no cache.
_POSITIONWISE = (
    keras.layers.Dense,
    keras.layers.Dropout,
    keras.layers.LayerNormalization,
    keras.layers.Activation,
)
_POSITION_LAYERS = (SinusoidalPositionEncoding, LearnedPositionEmbedding)
_UNIFORM_BITS = 24


def generate(
    model,
    prompts,
    max_new_tokens: int,
    *,
    sampler: str = "greedy",
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    end_token: int | None = None,
    use_cache: bool = True,
):
    """Continues each prompt with `max_new_tokens` tokens of a causal model.

    The model: a `keras.Sequential` that starts with a
    `keras.layers.Embedding` and ends with a `keras.layers.Dense` of logits,
    with this package's `TransformerBlock`s and `MultiHeadAttention`s
    (all `causal=True`), `SinusoidalPositionEncoding`,
    `LearnedPositionEmbedding` and position-wise Keras layers (`Dense`,
    `Dropout`, `LayerNormalization`, `Activation`) between them, as
    `build_toy_model(..., causal=True)` makes. Any position encoding of the
    package works (rotary and ALiBi inside the attention too). A Functional
    or subclassed model raises a `ValueError`; decode it with a step function
    of your own (see "By hand" below).

    Token 0 is padding. Prompts of different lengths share a batch: each
    prompt is right-padded with 0, and its positions count from its first
    token, so a prompt decodes in a batch as it does alone (greedy: the same
    tokens, logits within float rounding). With the cache, the rows move in
    step: all of them are at one position per step from the end of the
    shortest prompt, a row still in its prompt being fed its next prompt
    token (see "Cost").

    Args:
        model: the causal `keras.Sequential` (see above), built.
        prompts: integer array `(batch, prompt_len)`, right-padded with 0,
            or a list of token lists of any lengths; every prompt holds at
            least one token.
        max_new_tokens: positive int, the number of tokens to generate.
        sampler: `"greedy"` (the most likely token), `"random"` (a draw from
            the softmax of `logits / temperature`, restricted by `top_k`
            and `top_p` if given), `"top_k"` (as `"random"`; needs `top_k`)
            or `"top_p"` (nucleus sampling, as `"random"`; needs `top_p`).
        temperature: finite number >= 0 dividing the logits before a draw;
            0 means greedy, and so does a temperature too small to tell the
            most likely token from the rest in float32; a huge one draws
            uniformly among the allowed tokens (never the padding). Ignored
            by `"greedy"`.
        top_k: None or a positive int: draw among the `top_k` most likely
            tokens only.
        top_p: None or a number in (0, 1]: draw among the most likely tokens
            whose probabilities add up to `top_p` (the first always counts).
        seed: None or an int >= 0 for the draws. A given seed gives the same
            tokens with and without the cache, and the same draws on every
            backend (the package's counter-based hash of the seed, the row
            and the step; the logits may still differ in the last bits
            between backends). None draws a seed.
        end_token: None or a token id: a row that generates it stops; the
            positions after it are 0.
        use_cache: `True` (default) runs each step on the new token alone,
            with a key/value cache per attention layer; `False` reruns the
            whole model on the prompt and the tokens so far at every step
            (the reference; slower, same tokens).

    Returns:
        A NumPy int32 array `(batch, prompt_len + max_new_tokens)`: each
        prompt (without its padding), then its new tokens, then 0s.

    Cost: the caches hold `prompt_len + max_new_tokens` positions (a
    `sliding_window` layer's, a ring of its window), written in place as
    loop variables, in segments of 512, 512, 1024, 2048, ... positions; a
    step attends to the segments that hold what is filled, so its time
    follows the filled length, not `max_length`. The rows move in step
    from the end of the shortest prompt, a row still in its prompt being
    fed its next prompt token, so a batch of prompts of very different
    lengths runs more steps than `max_new_tokens`. The whole loop compiles
    once per model, options and shapes (later calls, with other seeds or
    weights, reuse it) on TensorFlow and JAX.

    By hand (any model, e.g. a Functional one): call each attention layer
    with its cache, in a step function you compile yourself, e.g.

        cache = block.init_cache(batch_size, max_length)
        x, cache = block(prompt_vectors, cache=cache, cache_index=0)
        # then, for each new token at position t:
        x, cache = block(token_vectors, cache=cache, cache_index=t)

    and run the steps in `keras.ops.while_loop` with the caches as loop
    variables: a single eager call that takes a cache and returns the new
    one copies it, so only a compiled loop updates it in place.

    Example:

    >>> model = keras_attention.build_toy_model(vocab_size=12, max_length=16,
    ...     d_model=16, num_heads=2, num_layers=1, causal=True)
    >>> keras_attention.generate(model, [[3, 4, 5], [6, 7]], 4).shape
    (2, 7)
    """
    embedding, middle, head = _decoder_layers(model)
    max_new_tokens = checks.positive_int(max_new_tokens, "max_new_tokens", _NAME)
    options = _sampling_options(sampler, temperature, top_k, top_p, seed)
    end_token = _end_token(end_token, embedding.input_dim)
    use_cache = checks.boolean(use_cache, "use_cache", _NAME)
    tokens, lengths = _prompts(prompts, embedding.input_dim)
    prompt_len = tokens.shape[1]
    total = prompt_len + max_new_tokens
    for layer in middle:
        if isinstance(layer, LearnedPositionEmbedding) and total > layer.max_length:
            raise ValueError(
                f"{_NAME}: the prompts and the new tokens need {total} positions, "
                f"and the position layer '{layer.name}' encodes {layer.max_length}: "
                f"shorten `max_new_tokens` or the prompts. Received: "
                f"max_new_tokens={max_new_tokens}, prompt length {prompt_len}"
            )
    buffer = np.zeros((tokens.shape[0], total), dtype="int32")
    buffer[:, :prompt_len] = tokens
    loop = _cached_loop if use_cache else _uncached_loop

    # The loop holds the model weakly: a cached compiled loop (below) must
    # not keep it alive.
    model_ref = weakref.ref(model)

    shortest = int(lengths.min())

    def run(buffer, lengths, seed):
        decoder = model_ref()
        return loop(
            decoder,
            _decoder_layers(decoder),
            buffer,
            lengths,
            shortest,
            max_new_tokens,
            end_token,
            dict(options, seed=seed),
        )

    seed_tensor = np.asarray(options["seed"], dtype="int32")
    # Compiled as the backend does it (`keras_attention/_backend/`): on
    # TensorFlow one XLA function per model, options and shapes, reused.
    key = (use_cache, prompt_len, shortest, max_new_tokens, end_token) + tuple(
        sorted((name, value) for name, value in options.items() if name != "seed")
    )
    run = _backend.current().compiled_loop(run, model, key)
    out = run(
        ops.convert_to_tensor(buffer),
        ops.convert_to_tensor(lengths),
        ops.convert_to_tensor(seed_tensor),
    )
    return np.asarray(ops.convert_to_numpy(out), dtype="int32")


def _decoder_layers(model):
    """`(embedding, middle layers, head)` of a decodable model, or a
    ValueError that says what was found."""
    if not isinstance(model, keras.Sequential):
        kind = type(model).__name__
        raise ValueError(
            f"{_NAME}: `model` must be a keras.Sequential: an Embedding, this "
            "package's causal layers, and a final Dense (as "
            "build_toy_model(..., causal=True) makes). Decode other models with "
            "a step function that calls the attention layers with `cache=` and "
            "`cache_index=` (see the docstring). "
            f"Received: a {kind} model '{getattr(model, 'name', '?')}'"
        )
    layers = model.layers
    if (
        len(layers) < 2
        or not isinstance(layers[0], keras.layers.Embedding)
        or not isinstance(layers[-1], keras.layers.Dense)
    ):
        names = [type(layer).__name__ for layer in layers]
        raise ValueError(
            f"{_NAME}: `model` must start with an Embedding and end with a Dense "
            f"of logits. Received: layers {names}"
        )
    middle = layers[1:-1]
    for layer in middle:
        if isinstance(layer, (TransformerBlock, MultiHeadAttention)):
            if not layer.causal:
                raise ValueError(
                    f"{_NAME}: every attention layer must be causal (a token "
                    f"may not see later ones). Received: layer '{layer.name}' "
                    "with causal=False"
                )
        elif not isinstance(layer, (*_POSITION_LAYERS, *_POSITIONWISE)):
            raise ValueError(
                f"{_NAME}: the layers between the Embedding and the final Dense "
                "must be TransformerBlock, MultiHeadAttention, "
                "SinusoidalPositionEncoding, LearnedPositionEmbedding, Dense, "
                "Dropout, LayerNormalization or Activation. Received: layer "
                f"'{layer.name}' of type {type(layer).__name__}"
            )
    if not model.built:
        raise ValueError(f"{_NAME}: `model` must be built. Received: an unbuilt model")
    return layers[0], middle, layers[-1]


def _sampling_options(sampler, temperature, top_k, top_p, seed):
    if sampler not in SAMPLERS:
        raise ValueError(
            f"{_NAME}: `sampler` must be one of {SAMPLERS}. "
            f"Received: sampler={sampler!r}"
        )
    checks.number_type(temperature, "temperature", _NAME, "a number >= 0")
    if not 0 <= temperature < math.inf:
        raise ValueError(
            f"{_NAME}: `temperature` must be a finite number >= 0 (0 means "
            f"greedy). Received: temperature={temperature!r}"
        )
    top_k = checks.positive_int(top_k, "top_k", _NAME, allow_none=True)
    if top_p is not None:
        checks.number_type(top_p, "top_p", _NAME, "None or a number in (0, 1]")
        if not 0 < top_p <= 1:
            raise ValueError(
                f"{_NAME}: `top_p` must be None or a number in (0, 1]. "
                f"Received: top_p={top_p!r}"
            )
    needed = {"top_k": ("top_k", top_k), "top_p": ("top_p", top_p)}.get(sampler)
    if needed is not None and needed[1] is None:
        raise ValueError(
            f"{_NAME}: sampler={sampler!r} needs `{needed[0]}`. "
            f"Received: {needed[0]}=None"
        )
    if sampler == "greedy" and (top_k is not None or top_p is not None):
        raise ValueError(
            f"{_NAME}: `top_k` and `top_p` restrict a random draw; "
            "sampler='greedy' takes neither (use sampler='random'). "
            f"Received: top_k={top_k!r}, top_p={top_p!r}"
        )
    if seed is None:
        seed = random.randrange(2**31)
    elif not checks.is_integer(seed) or not 0 <= seed < 2**31:
        raise ValueError(
            f"{_NAME}: `seed` must be None or an int in [0, 2**31). "
            f"Received: seed={seed!r}"
        )
    greedy = sampler == "greedy" or temperature == 0
    return {
        "greedy": greedy,
        "temperature": float(temperature),
        "top_k": top_k,
        "top_p": None if top_p is None else float(top_p),
        "seed": int(seed),
    }


def _end_token(end_token, vocab_size):
    if end_token is None:
        return None
    if not checks.is_integer(end_token) or not 0 < end_token < vocab_size:
        raise ValueError(
            f"{_NAME}: `end_token` must be None or a token id in [1, "
            f"{vocab_size}) (0 is padding). Received: end_token={end_token!r}"
        )
    return int(end_token)


def _prompts(prompts, vocab_size):
    """The prompts as int32 `(batch, prompt_len)`, right-padded, and their
    lengths `(batch,)`."""
    if isinstance(prompts, (list, tuple)) and all(
        isinstance(p, (list, tuple)) or getattr(p, "ndim", None) == 1 for p in prompts
    ):
        # Token lists, or one-dimensional arrays as tokenizers return them,
        # of any lengths: right-padded here.
        rows = [np.asarray(p) for p in prompts]
        kinds = {row.dtype.kind for row in rows if row.size}
        width = max((len(row) for row in rows), default=0)
        padded = np.zeros(
            (len(rows), width), dtype="int64" if kinds <= set("iu") else "float64"
        )
        for index, row in enumerate(rows):
            padded[index, : len(row)] = row
        prompts = padded
    elif hasattr(prompts, "shape") and hasattr(prompts, "dtype"):
        prompts = np.asarray(ops.convert_to_numpy(prompts))
    else:
        prompts = np.asarray(prompts)
    if prompts.dtype.kind not in "iu" or prompts.ndim != 2 or 0 in prompts.shape:
        raise ValueError(
            f"{_NAME}: `prompts` must be integer tokens (batch, prompt_len), "
            "right-padded with 0, or a list of token lists or 1-D arrays. "
            "Received: prompts "
            f"of shape {prompts.shape} and dtype {prompts.dtype}"
        )
    real = prompts != 0
    lengths = np.where(real.any(1), prompts.shape[1] - np.argmax(real[:, ::-1], 1), 0)
    inside = np.arange(prompts.shape[1]) < lengths[:, None]
    if (lengths == 0).any() or (inside & ~real).any():
        raise ValueError(
            f"{_NAME}: every prompt must hold at least one token, with 0 "
            "(padding) only after its last one. Received: prompts with lengths "
            f"{lengths.tolist()} and {int((inside & ~real).sum())} padding "
            "tokens inside them"
        )
    if prompts.min() < 0 or prompts.max() >= vocab_size:
        raise ValueError(
            f"{_NAME}: `prompts` must hold token ids in [0, {vocab_size}). "
            f"Received: ids from {prompts.min()} to {prompts.max()}"
        )
    return prompts.astype("int32"), lengths.astype("int32")


# The loops. `layers` is (embedding, middle, head); `tokens` int32
# (batch, total) holds the prompts and the tokens generated so far.


def _forward(layers, tokens, positions, caches, cache_index):
    """Logits `(batch, len, vocab)` in float32 of `tokens` at `positions`
    (int32 `(batch, len)`), and the updated caches."""
    embedding, middle, head = layers
    x = embedding(tokens)
    caches = list(caches)
    attention = 0
    for layer in middle:
        if isinstance(layer, (TransformerBlock, MultiHeadAttention)):
            x, caches[attention] = layer(
                x, cache=caches[attention], cache_index=cache_index, training=False
            )
            attention += 1
        elif isinstance(layer, _POSITION_LAYERS):
            x = layer(x, positions=positions)
        else:
            x = layer(x, training=False)
    return ops.cast(head(x), "float32"), tuple(caches)


def _cached_loop(
    model, layers, tokens, lengths, shortest, max_new_tokens, end_token, options
):
    # The rows move in step, one position per step from the shortest
    # prompt's end: a row still in its prompt is fed its next prompt token
    # (its logits unused), so every cache is written in order, which a ring
    # cache (sliding window) needs, with one `cache_index` for the batch.
    batch, total = ops.shape(tokens)
    caches = tuple(
        layer.init_cache(batch, total)
        for layer in layers[1]
        if isinstance(layer, (TransformerBlock, MultiHeadAttention))
    )
    positions = ops.broadcast_to(ops.arange(shortest, dtype="int32"), (batch, shortest))

    def _next(logits, position, tokens, lengths, done):
        """The tokens at `position`: each row's prompt token, or drawn
        from `logits` (and written) from the end of its prompt on."""
        step = position - lengths  # (batch,): the new token's number
        drawn = _sample(logits, step, options)
        prompt = ops.take(tokens, ops.minimum(position, total - 1), axis=1)
        new = ops.logical_and(ops.greater_equal(step, 0), ops.logical_not(done))
        token = ops.where(ops.greater_equal(step, 0), drawn, prompt)
        at = ops.equal(ops.arange(total, dtype="int32"), position)  # (total,)
        written = ops.where(
            ops.logical_and(at, ops.expand_dims(new, 1)),
            ops.expand_dims(token, 1),
            tokens,
        )
        finished = ops.greater_equal(step, max_new_tokens - 1)
        if end_token is not None:
            finished = ops.logical_or(finished, ops.equal(token, end_token))
        done = ops.logical_or(done, ops.logical_and(new, finished))
        return token, written, done

    logits, caches = _forward(layers, tokens[:, :shortest], positions, caches, 0)
    done = ops.zeros((batch,), dtype="bool")
    position = ops.convert_to_tensor(shortest, dtype="int32")
    token, tokens, done = _next(logits[:, -1], position, tokens, lengths, done)

    def cond(position, tokens, token, done, caches):
        return ops.logical_and(
            ops.less(position, total - 1), ops.logical_not(ops.all(done))
        )

    def body(position, tokens, token, done, caches):
        index = ops.broadcast_to(position, (batch, 1))
        logits, caches = _forward(
            layers, ops.expand_dims(token, 1), index, caches, position
        )
        position = position + 1
        token, tokens, done = _next(logits[:, 0], position, tokens, lengths, done)
        return position, tokens, token, done, caches

    result = ops.while_loop(cond, body, (position, tokens, token, done, caches))
    return result[1]


def _uncached_loop(
    model, layers, tokens, lengths, shortest, max_new_tokens, end_token, options
):
    batch = ops.shape(tokens)[0]

    def step_tokens(step, tokens, done):
        # The whole model on the whole buffer: causal, so the positions
        # after each row's last token change nothing before it.
        logits = ops.cast(model(tokens, training=False), "float32")
        token = _sample(_at(logits, lengths + step - 1), step, options)
        return _append(tokens, token, lengths + step, done, end_token)

    step = ops.convert_to_tensor(0, dtype="int32")
    tokens, done = step_tokens(step, tokens, ops.zeros((batch,), dtype="bool"))

    def cond(step, tokens, done):
        return ops.logical_and(
            ops.less(step, max_new_tokens - 1), ops.logical_not(ops.all(done))
        )

    def body(step, tokens, done):
        step = step + 1
        return (step, *step_tokens(step, tokens, done))

    return ops.while_loop(cond, body, (step, tokens, done))[1]


def _at(logits, index):
    """`logits[b, index[b]]`: `(batch, vocab)` from `(batch, len, vocab)`."""
    index = ops.reshape(index, (-1, 1, 1))
    index = ops.broadcast_to(index, (ops.shape(logits)[0], 1, ops.shape(logits)[2]))
    return ops.take_along_axis(logits, index, axis=1)[:, 0]


def _append(tokens, token, position, done, end_token):
    """Writes `token` at each row's `position` (0 in finished rows)."""
    token = ops.where(done, 0, ops.cast(token, "int32"))
    at = ops.equal(
        ops.arange(ops.shape(tokens)[1], dtype="int32"), ops.expand_dims(position, 1)
    )
    tokens = ops.where(at, ops.expand_dims(token, 1), tokens)
    if end_token is not None:
        done = ops.logical_or(done, ops.equal(token, end_token))
    return tokens, done


def _sample(logits, step, options):
    """The next token of each row, int32 `(batch,)`, from float32 logits
    `(batch, vocab)`; never 0, the padding."""
    padding = ops.equal(ops.arange(logits.shape[-1]), 0)
    logits = ops.where(padding, float("-inf"), logits)
    if options["greedy"]:
        return ops.cast(ops.argmax(logits, axis=-1), "int32")
    vocab = logits.shape[-1]
    k = vocab if options["top_k"] is None else min(options["top_k"], vocab)
    values, indices = ops.top_k(logits, k)  # sorted, most likely first
    if k == 1:
        return ops.cast(indices[:, 0], "int32")
    # Shifted by the largest logit before the temperature divides them: the
    # largest becomes 0 and the rest stay below it, so a tiny temperature
    # gives the greedy token (never inf - inf), and the padding stays -inf.
    # The temperature kept within [1e-30, 1e30], where the draw is the same
    # in float32 (below, the greedy token; above, uniform among the allowed
    # ones) and the reciprocal XLA may multiply by stays a normal number.
    temperature = min(max(options["temperature"], 1e-30), 1e30)
    values = (values - values[:, :1]) / temperature
    probs = ops.softmax(values, axis=-1)
    if options["top_p"] is not None:
        before = ops.cumsum(probs, axis=-1) - probs
        probs = ops.where(ops.less(before, options["top_p"]), probs, 0.0)
    cumulative = ops.cumsum(probs, axis=-1)
    # The inverse of the distribution at a uniform draw in [0, total).
    target = _uniform(options["seed"], step, ops.shape(logits)[0])
    target = ops.expand_dims(target, 1) * cumulative[:, -1:]
    choice = ops.sum(ops.cast(ops.less_equal(cumulative, target), "int32"), axis=-1)
    choice = ops.minimum(choice, k - 1)
    token = ops.take_along_axis(indices, ops.expand_dims(choice, 1), axis=1)
    return ops.cast(token[:, 0], "int32")


def _uniform(seed, step, batch):
    """float32 `(batch,)` in [0, 1): a hash of (seed, step, row), the same
    on every backend."""
    rows = ops.arange(batch, dtype="int32")
    seed = ops.cast(seed, "int32")
    bits = pattern.counter_hash(seed, rows, step)
    uniform = ops.bitwise_and(bits, (1 << _UNIFORM_BITS) - 1)
    return ops.cast(uniform, "float32") / float(1 << _UNIFORM_BITS)
