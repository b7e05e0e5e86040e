"""The dtype policies of a layer's sublayers through `get_config` and back.

A quantized (or otherwise mixed) sublayer has a policy of its own. Keras'
layers do not save it, so a quantized model holding them fails to load. A
layer of this package that builds sublayers saves their policies by path in
its config's `dtype` (a `DTypePolicyMap` whose default is the layer's own
policy) and, when it builds them again, gives each sublayer the policy saved
under a path ending in `<layer name>/<sublayer name>`: reloaded inside a
model, the layer may build before it has the model's prefix in its path.
"""

import keras


def sublayer_policy(layer, name):
    """The dtype policy for `layer`'s sublayer `name`: the one its policy map
    saves for it, else the layer's policy (a map Keras reads by path)."""
    policy = layer.dtype_policy
    if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
        suffix = f"{layer.name}/{name}"
        for key in policy:
            if key == suffix or key.endswith("/" + suffix):
                return policy[key]
    return policy


def save_sublayer_policies(config, layer, sublayers):
    """`config` with the policies of the quantized `sublayers` of a built
    `layer` in its `dtype`, by path."""
    policy = layer.dtype_policy
    if isinstance(policy, keras.dtype_policies.DTypePolicyMap):
        policy = policy.default_policy
    if not layer.built:
        return config
    policies = {
        sublayer.path: sublayer.dtype_policy
        for sublayer in sublayers
        if sublayer.dtype_policy.quantization_mode is not None
    }
    if policies:
        config["dtype"] = keras.dtype_policies.serialize(
            keras.dtype_policies.DTypePolicyMap(policy, policies)
        )
    return config
