"""Runnable integration examples; tests/integration/test_examples.py runs each of them."""
