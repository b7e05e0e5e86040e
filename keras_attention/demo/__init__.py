"""The showcase that `python -m keras_attention demo` (`make demo`) runs: the
reversal task (`reversal_task.py`), the toy model built from the package's
layers (`toy_model.py`), the reversal demo (`reversal_demo.py`) and the
generation demo (`generation_demo.py`). Every public name is exported by
`keras_attention` itself."""
