"""``einsum``: Einstein summation with PyTorch's equation syntax (letters, ``...``, ``->`` or
the implicit output of the letters that occur once, in alphabetical order).

The equation is first reduced to a canonical form in which every operand's letters are distinct
and every letter has one size: ``...`` becomes letters of its own, a letter repeated within one
operand (``"ii->i"``) becomes a diagonal (:func:`.utility.diagonal`), and size-1 axes
broadcast against other operands are expanded. One :class:`Einsum` primitive then runs the
canonical equation; the gradient of operand i is again an einsum of the output's gradient with the
other operands, expanded over letters that only operand i has -- so gradients of any order work.
"""
from __future__ import annotations

import string

import numpy as np

from ..autograd import Function
from ..backend import get_array_module
from ..tensor import Tensor
from ._util import check_tensor
from .shape import broadcast_to
from .utility import _diagonal

__all__ = ["einsum"]


class Einsum(Function):
    """A canonical einsum (distinct letters per operand, one size per letter)."""

    def forward(self, *arrays, subs, out):
        self.subs, self.out = subs, out
        xp = get_array_module(arrays[0])
        eq = ",".join(subs) + "->" + out
        return xp.einsum(eq, *arrays, optimize=len(arrays) > 2)

    def backward(self, g):
        grads = []
        for i, sub in enumerate(self.subs):
            if not self.needs_input_grad[i]:
                grads.append(None)
                continue
            others = [(s, self.saved_input(j)) for j, s in enumerate(self.subs) if j != i]
            seen = set(self.out).union(*[set(s) for s, _ in others])
            keep = "".join(c for c in sub if c in seen)
            gi = Einsum.apply(g, *[t for _, t in others], subs=(self.out,) + tuple(
                s for s, _ in others), out=keep)
            shape = self.saved_input(i).shape
            if keep != sub:  # letters only this operand has: its gradient is constant along them
                gi = broadcast_to(gi.reshape(tuple(shape[k] if c in seen else 1
                                                   for k, c in enumerate(sub))), shape)
            grads.append(gi)
        return tuple(grads)


def _take_diagonal(t, sub, letter):
    """Operand ``t`` with the axes labelled ``letter`` (two or more) merged into one (its
    diagonal), as the last axis; returns (tensor, new subscripts)."""
    sizes = [n for c, n in zip(sub, t.shape) if c == letter]
    if len(set(sizes)) > 1:
        raise ValueError(f"einsum: the axes labelled {letter!r} have different sizes {sizes}")
    while sub.count(letter) > 1:
        first = sub.index(letter)
        second = sub.index(letter, first + 1)
        t = _diagonal(t, 0, first, second)                 # the pair becomes one last axis
        sub = "".join(c for k, c in enumerate(sub) if k not in (first, second)) + letter
    return t, sub


def einsum(equation: str, *operands) -> Tensor:
    """Sum of products of the operands' elements as the ``equation`` labels them, e.g.
    ``einsum("bij,bjk->bik", a, b)`` (batched matmul), ``einsum("ii", a)`` (trace),
    ``einsum("...d,...d->...", a, b)``."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise ValueError("einsum: expected at least one operand")
    ts = [check_tensor(t, f"operands[{i}]") for i, t in enumerate(operands)]
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    subs = lhs.split(",")
    if len(subs) != len(ts):
        raise ValueError(f"einsum: the equation {equation!r} names {len(subs)} operands, got "
                         f"{len(ts)}")
    used = set(eq) - set(",->.")
    if not all(c in string.ascii_letters for c in used):
        raise ValueError(f"einsum: subscripts must be letters, got {equation!r}")
    spare = [c for c in string.ascii_letters if c not in used]
    # '...' -> letters of its own, right-aligned across operands (broadcasting)
    n_ell = 0
    for s, t in zip(subs, ts):
        if "..." in s:
            n_ell = max(n_ell, t.ndim - (len(s) - 3))
    ell = "".join(spare[:n_ell])
    canon = []
    for i, (s, t) in enumerate(zip(subs, ts)):
        if "..." in s:
            k = t.ndim - (len(s) - 3)
            if k < 0:
                raise ValueError(f"einsum: operand {i} has {t.ndim} dimensions, fewer than "
                                 f"the subscripts {s!r} need")
            s = s.replace("...", ell[n_ell - k:])
        if "." in s or len(s) != t.ndim:
            raise ValueError(f"einsum: subscripts {subs[i]!r} do not match operand {i} of shape "
                             f"{tuple(t.shape)}")
        canon.append(s)
    if arrow:
        out = rhs.replace("...", ell)
        if "." in out or len(set(out)) != len(out):
            raise ValueError(f"einsum: invalid output subscripts {rhs!r}")
        missing = set(out) - set("".join(canon))
        if missing:
            raise ValueError(f"einsum: output letters {sorted(missing)} appear in no operand")
    else:
        counts = {}
        for c in "".join(canon):
            counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    # repeated letters within an operand -> diagonals
    for i in range(len(ts)):
        for c in sorted(set(canon[i])):
            if canon[i].count(c) > 1:
                ts[i], canon[i] = _take_diagonal(ts[i], canon[i], c)
    # one size per letter: expand size-1 axes
    sizes = {}
    for s, t in zip(canon, ts):
        for c, n in zip(s, t.shape):
            if sizes.get(c, 1) != 1 and n not in (1, sizes[c]):
                raise ValueError(f"einsum: letter {c!r} has sizes {sizes[c]} and {n} in "
                                 f"{equation!r} (shapes {[tuple(t.shape) for t in operands]})")
            sizes[c] = max(sizes.get(c, 1), n)
    for i, (s, t) in enumerate(zip(canon, ts)):
        full = tuple(sizes[c] for c in s)
        if full != t.shape:
            ts[i] = broadcast_to(t, full)
    dtypes = {t.dtype for t in ts}
    if len(dtypes) > 1:
        common = np.result_type(*dtypes)
        ts = [t.to(common) for t in ts]
    return Einsum.apply(*ts, subs=tuple(canon), out=out)
