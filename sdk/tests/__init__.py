"""Tests of the pico Python SDK against a real pico-apiserver."""
