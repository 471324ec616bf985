"""Inference engines behind one interface; tasks ask a backend for predictions."""
