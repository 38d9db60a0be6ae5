"""Trained multi-exit models and the torch implementation of the InferenceOracle."""
