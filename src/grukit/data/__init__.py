"""Loaders for the data formats users bring and the built-in data sets."""
