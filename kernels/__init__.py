"""Array kernels, installed as ``tinygen.kernels``.

Kernels know arrays only, never Tensors:

* :mod:`tinygen.kernels.cpu`  -- Numba ``@njit(cache=True)`` functions (CPU hot loops);
* :mod:`tinygen.kernels.cuda` -- CUDA C sources (``*.cu``) and their CuPy ``RawModule`` loader.

The differentiable ops in :mod:`tinygen.functional` call into these.
"""
