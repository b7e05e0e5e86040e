"""Tests of `keras_attention/_backend/`, one file per module."""
