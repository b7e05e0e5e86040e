"""Tests of `keras_attention/explain/`, one file per module."""
