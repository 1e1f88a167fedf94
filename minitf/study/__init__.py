"""Tools for studying what a model attends to."""
