"""Numba CPU kernels (``@njit(cache=True)`` functions over arrays; shapes in each docstring)."""
