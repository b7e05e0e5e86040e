"""Reading and picturing attention: the weights of a model's attention calls
(`weights.py`, recorded by `_recording.py`), attention rollout and flow
(`rollout.py`), the pictures (`plotting.py`, matplotlib, the `[plot]` extra)
and the HTML head view (`head_view.py`). Every public name is exported by
`keras_attention` itself."""
