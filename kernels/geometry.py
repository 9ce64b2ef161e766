"""Convolution geometry: every output size, padding rule and argument check in one place.

All convolutions are reduced to one description per spatial axis, a :class:`AxisGeometry`
``(size_in, kernel, stride, dilation, pad_lo, size_out)``, used by both directions:

* convolution (input ``x`` of ``size_in``, output ``y`` of ``size_out``)::

      y[o] = sum_k w[k] * x[o*stride + k*dilation - pad_lo]        (x is 0 outside [0, size_in))

* transposed convolution is its adjoint with the roles of the sizes swapped: its *input* has
  ``size_out`` elements, its *output* ``size_in``::

      x[i] = sum_{o, k : o*stride + k*dilation - pad_lo = i} w[k] * y[o]

PyTorch's arguments map onto this as follows (``K = dilation*(kernel-1) + 1``, the dilated extent):

* ``conv``:  ``pad_lo = padding`` and ``size_out = floor((size_in + 2*padding - K) / stride) + 1``;
  ``padding="same"`` splits ``K - 1`` as ``pad_lo = (K-1)//2`` (the extra one on the right, as
  PyTorch does) with stride 1; ``padding="valid"`` is 0.
* ``conv_transpose`` (input length ``L``): ``size_in = (L-1)*stride - 2*padding + K + output_padding``
  with ``pad_lo = padding``; the transposed conv is the adjoint of the conv with this geometry.

The rules of Fleuret's lecture on autoencoders and generative models ("Transposed convolutions") are
the special case padding = 0, dilation = 1:
a conv maps W to (W - w) div s + 1, a transposed conv maps W to (W - 1) s + w, and composing the
two keeps W iff W = w + s q for some integer q >= 0.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

__all__ = ["AxisGeometry", "conv_output_size", "conv_transpose_output_size", "expand_param",
           "conv_geometry", "conv_transpose_geometry", "transposed_output_padding"]


@dataclass(frozen=True)
class AxisGeometry:
    """One spatial axis of a convolution (see the module docstring)."""

    size_in: int    # length of the convolution's input (= the transposed conv's output)
    kernel: int
    stride: int
    dilation: int
    pad_lo: int     # zeros (conv) / cropped elements (transposed conv) before the first element
    size_out: int   # length of the convolution's output (= the transposed conv's input)

    @property
    def extent(self) -> int:
        """Dilated kernel extent ``dilation*(kernel-1) + 1``."""
        return self.dilation * (self.kernel - 1) + 1


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """Output length of a convolution: floor((size + 2 padding - dilation (kernel-1) - 1) / stride) + 1."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                               output_padding: int = 0, dilation: int = 1) -> int:
    """Output length of a transposed convolution:
    (size - 1) stride - 2 padding + dilation (kernel - 1) + output_padding + 1."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def expand_param(value, n: int, name: str, op: str, minimum: int | None = None) -> tuple:
    """An int or a length-``n`` sequence of ints as an ``n``-tuple, checked against ``minimum``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        values = (int(value),) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise TypeError(f"{op}: {name} must be an int or a tuple of {n} ints, "
                            f"got {value!r}") from None
        if len(values) != n or not all(isinstance(v, numbers.Integral) and
                                       not isinstance(v, bool) for v in values):
            raise ValueError(f"{op}: {name} must be an int or a tuple of {n} ints, "
                             f"got {value!r}")
        values = tuple(int(v) for v in values)
    if minimum is not None and any(v < minimum for v in values):
        rule = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{op}: {name} must be {rule}, got {value!r}")
    return values


def conv_geometry(op: str, spatial_in: tuple, kernel: tuple, stride, padding, dilation) -> tuple:
    """Per-axis :class:`AxisGeometry` of a convolution, validating PyTorch's rules.

    ``padding`` is an int, a tuple, ``"valid"`` or ``"same"``.
    """
    n = len(spatial_in)
    stride = expand_param(stride, n, "stride", op, minimum=1)
    dilation = expand_param(dilation, n, "dilation", op, minimum=1)
    if isinstance(padding, str):
        if padding == "valid":
            pads = [(0, 0)] * n
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{op}: padding='same' is not supported for strided "
                                 f"convolutions (stride={stride})")
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))
        else:
            raise ValueError(f"{op}: padding must be an int, a tuple of ints, 'valid' or "
                             f"'same', got {padding!r}")
    else:
        pads = [(p, p) for p in expand_param(padding, n, "padding", op, minimum=0)]
    axes = []
    for i in range(n):
        size, k, s, d = spatial_in[i], kernel[i], stride[i], dilation[i]
        lo, hi = pads[i]
        extent = d * (k - 1) + 1
        if size + lo + hi < extent:
            raise ValueError(f"{op}: the kernel (size {tuple(kernel)}, dilation {dilation}, "
                             f"extent {extent} on axis {i}) is larger than the padded input "
                             f"(spatial shape {tuple(spatial_in)}, padded {size + lo + hi} on "
                             f"axis {i})")
        out = (size + lo + hi - extent) // s + 1
        axes.append(AxisGeometry(size, k, s, d, lo, out))
    return tuple(axes)


def conv_transpose_geometry(op: str, spatial_in: tuple, kernel: tuple, stride, padding,
                            output_padding, dilation) -> tuple:
    """Per-axis :class:`AxisGeometry` of a transposed convolution (whose *input* is the
    geometry's ``size_out``), validating PyTorch's rules."""
    n = len(spatial_in)
    stride = expand_param(stride, n, "stride", op, minimum=1)
    dilation = expand_param(dilation, n, "dilation", op, minimum=1)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple of ints for transposed "
                         f"convolutions, got {padding!r}")
    padding = expand_param(padding, n, "padding", op, minimum=0)
    output_padding = expand_param(output_padding, n, "output_padding", op, minimum=0)
    axes = []
    for i in range(n):
        size, k, s, d, p, op_ = (spatial_in[i], kernel[i], stride[i], dilation[i], padding[i],
                                 output_padding[i])
        if op_ >= s and op_ >= d:
            raise ValueError(f"{op}: output_padding {output_padding} must be smaller than "
                             f"either stride {stride} or dilation {dilation} (axis {i})")
        out = conv_transpose_output_size(size, k, s, p, op_, d)
        if out <= 0:
            raise ValueError(f"{op}: the output would have size {out} on axis {i} (input "
                             f"spatial shape {tuple(spatial_in)}, kernel {tuple(kernel)}, "
                             f"stride {stride}, padding {padding}, dilation {dilation}); it must "
                             f"be positive")
        axes.append(AxisGeometry(out, k, s, d, p, size))
    return tuple(axes)


def transposed_output_padding(op: str, spatial_in: tuple, output_size, kernel: tuple, stride,
                              padding, dilation) -> tuple:
    """The ``output_padding`` that makes a transposed conv produce ``output_size`` (PyTorch's
    ``_output_padding``): the smallest output is the one with output_padding 0 and every size up
    to ``stride - 1`` more is reachable."""
    n = len(spatial_in)
    output_size = tuple(int(s) for s in output_size)
    if len(output_size) == n + 2:
        output_size = output_size[2:]
    if len(output_size) != n:
        raise ValueError(f"{op}: output_size must have {n} or {n + 2} entries, got "
                         f"{output_size}")
    stride = expand_param(stride, n, "stride", op, minimum=1)
    dilation = expand_param(dilation, n, "dilation", op, minimum=1)
    padding = expand_param(padding, n, "padding", op, minimum=0)
    result = []
    for i in range(n):
        lo = conv_transpose_output_size(spatial_in[i], kernel[i], stride[i], padding[i], 0,
                                        dilation[i])
        hi = lo + stride[i] - 1
        if not lo <= output_size[i] <= hi:
            raise ValueError(f"{op}: requested output_size {output_size} cannot be reached: on "
                             f"axis {i} the output size must be between {lo} and {hi} for input "
                             f"spatial shape {tuple(spatial_in)}")
        result.append(output_size[i] - lo)
    return tuple(result)
