"""CUDA C sources (``*.cu``, shipped as package data) and, with the GPU backend, their loader."""
