"""Tests of `keras_attention/layers/`, one file per module."""
