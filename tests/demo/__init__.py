"""Tests of `keras_attention/demo/`, one file per module."""
