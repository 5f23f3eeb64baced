"""Frames in and out: sketch loading, post-processing, interpolation, writers."""
