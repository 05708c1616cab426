"""Wrappers: transformations that take a transformation and select parameters or guard steps."""
