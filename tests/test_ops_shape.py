"""Shape ops and indexing through the gradient-check harness: reshape/flatten/unflatten,
squeeze/unsqueeze, permute/transpose, expand/broadcast_to/sum_to, cat/stack/split/chunk, constant
pad (negative widths crop), flip, basic / integer-array / boolean / mixed indexing (repeated indices
accumulate) and the scatter that is indexing's adjoint. Every one is linear: its double backward
must be exactly zero (``second_order="zero"``)."""
import numpy as np
import pytest
from hypothesis import assume, given, strategies as st

import tinygen
from tinygen import functional as F
from harness import arrays, check_op as _check_op, shapes, torch

T = torch


def check_op(*args, **kwargs):
    """Shape ops are linear: their double backward must be exactly zero."""
    kwargs.setdefault("second_order", "zero")
    return _check_op(*args, **kwargs)


@given(data=st.data())
def test_reshape_flatten_squeeze_unsqueeze(data):
    a = data.draw(arrays(data.draw(shapes())))
    shape = data.draw(st.permutations(list(a.shape) + [1]))
    check_op(lambda x: F.reshape(x, shape), [a], reference=lambda x: x.reshape(shape),
             torch_fn=lambda x: x.reshape(shape))
    check_op(lambda x: F.reshape(x, (-1,)), [a], reference=lambda x: x.reshape(-1))
    if a.ndim:
        start = data.draw(st.integers(0, a.ndim - 1))
        end = data.draw(st.integers(start, a.ndim - 1))
        check_op(lambda x: F.flatten(x, start, end), [a],
                 torch_fn=lambda x: T.flatten(x, start, end),
                 reference=lambda x: x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:]))
    dim = data.draw(st.integers(-a.ndim - 1, a.ndim))
    check_op(lambda x: F.unsqueeze(x, dim), [a], reference=lambda x: np.expand_dims(x, dim),
             torch_fn=lambda x: T.unsqueeze(x, dim))
    check_op(lambda x: F.squeeze(F.unsqueeze(x, dim)), [a], reference=np.squeeze,
             torch_fn=lambda x: T.squeeze(T.unsqueeze(x, dim)))
    if a.ndim:
        sq = data.draw(st.integers(-a.ndim, a.ndim - 1))  # a no-op unless that axis has size 1
        check_op(lambda x: x.squeeze(sq), [a],
                 reference=lambda x: np.squeeze(x, sq) if x.shape[sq] == 1 else x,
                 torch_fn=lambda x: x.squeeze(sq))
        ax = data.draw(st.integers(0, a.ndim - 1))
        n = a.shape[ax]
        sizes = data.draw(st.sampled_from([(n,), (1, n), (n, 1), (-1, 1), (1, -1)]))
        full = tuple(n if s == -1 else s for s in sizes)
        check_op(lambda x: F.unflatten(x, ax, sizes), [a],
                 reference=lambda x: x.reshape(x.shape[:ax] + full + x.shape[ax + 1:]),
                 torch_fn=lambda x: T.unflatten(x, ax, sizes))


@given(data=st.data())
def test_permute_transpose(data):
    a = data.draw(arrays(data.draw(shapes(min_dims=1))))
    perm = tuple(data.draw(st.permutations(list(range(a.ndim)))))
    check_op(lambda x: F.permute(x, perm), [a], reference=lambda x: x.transpose(perm),
             torch_fn=lambda x: x.permute(perm))
    d0, d1 = data.draw(st.integers(0, a.ndim - 1)), data.draw(st.integers(-a.ndim, a.ndim - 1))
    check_op(lambda x: F.transpose(x, d0, d1), [a], reference=lambda x: np.swapaxes(x, d0, d1),
             torch_fn=lambda x: T.transpose(x, d0, d1))


@given(data=st.data())
def test_expand_broadcast_to(data):
    a = data.draw(arrays(data.draw(shapes(max_side=3))))
    lead = data.draw(st.lists(st.integers(1, 3), max_size=2))
    target = tuple(lead) + tuple(data.draw(st.integers(1, 3)) if s == 1 else s for s in a.shape)
    check_op(lambda x: F.broadcast_to(x, target), [a],
             reference=lambda x: np.broadcast_to(x, target),
             torch_fn=lambda x: x.expand(target))
    spec = tuple(lead) + (-1,) * a.ndim
    check_op(lambda x: F.expand(x, spec), [a], reference=lambda x: np.broadcast_to(
        x, tuple(lead) + x.shape), torch_fn=lambda x: x.expand(spec))
    big = data.draw(arrays(target))  # sum_to: the adjoint of broadcast_to
    check_op(lambda x: F.sum_to(x, a.shape), [big],
             reference=lambda x: x.sum(axis=tuple(range(len(lead)))).sum(
                 axis=tuple(i for i, s in enumerate(a.shape) if s == 1), keepdims=True).reshape(
                 a.shape),
             torch_fn=lambda x: x.sum_to_size(a.shape) if a.shape else x.sum())


@given(data=st.data())
def test_cat_stack(data):
    base = data.draw(shapes(min_dims=1, max_dims=3))
    dim = data.draw(st.integers(-len(base), len(base) - 1))
    n = data.draw(st.integers(1, 3))
    parts = []
    for _ in range(n):
        s = list(base)
        s[dim] = data.draw(st.integers(1, 3))
        parts.append(data.draw(arrays(tuple(s))))
    check_op(lambda *xs: F.cat(xs, dim), parts, reference=lambda *xs: np.concatenate(xs, dim),
             torch_fn=lambda *xs: T.cat(xs, dim))
    same = [data.draw(arrays(base)) for _ in range(n)]
    sdim = data.draw(st.integers(-len(base) - 1, len(base)))
    check_op(lambda *xs: F.stack(xs, sdim), same, reference=lambda *xs: np.stack(xs, sdim),
             torch_fn=lambda *xs: T.stack(xs, sdim))


@given(data=st.data())
def test_split_chunk(data):
    a = data.draw(arrays(data.draw(shapes(min_dims=1, max_side=6))))
    dim = data.draw(st.integers(0, a.ndim - 1))
    size = data.draw(st.integers(1, a.shape[dim]))
    pieces = F.split(tinygen.tensor(a), size, dim)
    expected = torch_like_split(a, size, dim)
    assert [p.shape for p in pieces] == [e.shape for e in expected]
    for k in range(len(expected)):
        check_op(lambda x, k=k: F.split(x, size, dim)[k], [a],
                 reference=lambda x, k=k: torch_like_split(x, size, dim)[k],
                 torch_fn=lambda x, k=k: T.split(x, size, dim)[k])
    chunks = data.draw(st.integers(1, 4))
    pieces = F.chunk(tinygen.tensor(a), chunks, dim)
    n = a.shape[dim]
    step = -(-n // chunks)  # torch.chunk: pieces of ceil(n / chunks), maybe fewer pieces
    expected = torch_like_split(a, step, dim)
    assert [p.shape for p in pieces] == [e.shape for e in expected]
    if torch is not None:
        assert [p.shape for p in pieces] == [tuple(p.shape) for p in T.chunk(T.tensor(a), chunks,
                                                                                 dim)]
    k = data.draw(st.integers(0, len(expected) - 1))
    check_op(lambda x: x.chunk(chunks, dim)[k], [a],
             reference=lambda x: torch_like_split(x, step, dim)[k],
             torch_fn=lambda x: T.chunk(x, chunks, dim)[k])
    # all the pieces together: the gradients of every piece land in the right place
    check_op(lambda x: F.cat([p * (i + 1.0) for i, p in enumerate(F.split(x, size, dim))], dim),
             [a], reference=lambda x: np.concatenate(
                 [p * (i + 1.0) for i, p in enumerate(torch_like_split(x, size, dim))], dim))


def torch_like_split(a, size, dim):
    return [np.take(a, range(i, min(i + size, a.shape[dim])), axis=dim)
            for i in range(0, a.shape[dim], size)]


def test_split_sections_and_errors():
    x = tinygen.tensor(np.arange(6.0))
    assert [p.shape for p in F.split(x, [1, 2, 3])] == [(1,), (2,), (3,)]
    with pytest.raises(ValueError, match="do not add up"):
        F.split(x, [1, 2])


@given(data=st.data())
def test_pad_constant_including_negative_widths(data):
    a = data.draw(arrays(data.draw(shapes(min_dims=1, max_side=4))))
    k = data.draw(st.integers(1, a.ndim))
    pad = []
    for i in range(k):
        size = a.shape[a.ndim - 1 - i]
        lo = data.draw(st.integers(-(size - 1), 2))
        hi = data.draw(st.integers(-(size - 1 + min(lo, 0)), 2))
        pad += [lo, hi]
    value = data.draw(st.sampled_from([0.0, 1.5]))

    def ref(x):
        for i in range(k):
            ax = x.ndim - 1 - i
            lo, hi = pad[2 * i], pad[2 * i + 1]
            x = np.take(x, range(max(-lo, 0), x.shape[ax] - max(-hi, 0)), axis=ax)
            widths = [(0, 0)] * x.ndim
            widths[ax] = (max(lo, 0), max(hi, 0))
            x = np.pad(x, widths, constant_values=value)
        return x
    check_op(lambda x: F.pad(x, pad, value=value), [a], reference=ref,
             torch_fn=lambda x: T.nn.functional.pad(x, pad, value=value))


@given(data=st.data())
def test_flip(data):
    a = data.draw(arrays(data.draw(shapes(min_dims=1))))
    dims = tuple(data.draw(st.lists(st.integers(0, a.ndim - 1), min_size=1, unique=True)))
    check_op(lambda x: F.flip(x, dims), [a], reference=lambda x: np.flip(x, dims),
             torch_fn=lambda x: T.flip(x, dims))


@given(data=st.data())
def test_basic_indexing(data):
    a = data.draw(arrays(data.draw(shapes(min_dims=1, max_side=5))))
    index = []
    for s in a.shape:
        kind = data.draw(st.sampled_from(["int", "slice", "full"]))
        if kind == "int":
            index.append(data.draw(st.integers(-s, s - 1)))
        elif kind == "slice":
            lo = data.draw(st.integers(0, s - 1))
            step = data.draw(st.sampled_from([1, 2, -1]))
            index.append(slice(lo, None, step) if step > 0 else slice(None, lo, step)
                         if lo < s - 1 else slice(None, None, -1))
        else:
            index.append(slice(None))
    index = tuple(index) + (None,) * data.draw(st.integers(0, 1))
    out = a[index]
    assume(out.size > 0)
    check_op(lambda x: x[index], [a], reference=lambda x: x[index],
             torch_fn=(lambda x: x[index]) if not any(
                 isinstance(i, slice) and (i.step or 1) < 0 for i in index) else None)


@given(data=st.data())
def test_integer_array_indexing_accumulates_repeats(data):
    a = data.draw(arrays(data.draw(shapes(min_dims=1, max_side=4))))
    n = data.draw(st.integers(1, 6))
    idx = np.array(data.draw(st.lists(st.integers(-a.shape[0], a.shape[0] - 1), min_size=n,
                                      max_size=n)))
    check_op(lambda x: x[idx], [a], reference=lambda x: x[idx],
             torch_fn=lambda x: x[T.tensor(idx)])
    if a.ndim >= 2:
        cols = np.array(data.draw(st.lists(st.integers(0, a.shape[1] - 1), min_size=n,
                                           max_size=n)))
        check_op(lambda x: x[idx, cols], [a], reference=lambda x: x[idx, cols],
                 torch_fn=lambda x: x[T.tensor(idx), T.tensor(cols)])


def test_repeated_index_gradient_counts_each_use():
    x = tinygen.tensor(np.arange(4.0), requires_grad=True)
    x[tinygen.tensor([0, 0, 3, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 0.0, 0.0, 1.0])


@given(data=st.data())
def test_boolean_mask_indexing(data):
    a = data.draw(arrays(data.draw(shapes(min_dims=1, max_side=4))))
    mask = data.draw(arrays(a.shape)) > 0
    check_op(lambda x: x[tinygen.tensor(mask)], [a], reference=lambda x: x[mask],
             torch_fn=lambda x: x[T.tensor(mask)])


@given(data=st.data())
def test_mixed_advanced_and_basic_indexing(data):
    a = data.draw(arrays(data.draw(shapes(min_dims=2, max_dims=3, max_side=4))))
    n = data.draw(st.integers(1, 5))
    idx = np.array(data.draw(st.lists(st.integers(-a.shape[0], a.shape[0] - 1), min_size=n,
                                      max_size=n)))
    lo = data.draw(st.integers(0, a.shape[1] - 1))
    for index in ((idx, slice(lo, None)), (Ellipsis, idx % a.shape[-1]),
                  (slice(None), None, idx % a.shape[1]), (idx.reshape(-1, 1), slice(None, lo + 1))):
        check_op(lambda x: x[index], [a], reference=lambda x: x[index],
                 torch_fn=lambda x: x[tuple(T.tensor(i) if isinstance(i, np.ndarray) else i
                                            for i in index)])
    k = data.draw(st.integers(-a.shape[0], a.shape[0] - 1))
    check_op(lambda x: x[tinygen.tensor(k)], [a], reference=lambda x: x[k],
             torch_fn=lambda x: x[T.tensor(k)])
    last = lo % a.shape[-1]
    check_op(lambda x: x[..., last], [a], reference=lambda x: x[..., last],
             torch_fn=lambda x: x[..., last])


@given(data=st.data())
def test_index_add_scatter_is_the_adjoint_of_indexing(data):
    shape = data.draw(shapes(min_dims=1, max_side=4))
    n = data.draw(st.integers(1, 6))
    idx = np.array(data.draw(st.lists(st.integers(0, shape[0] - 1), min_size=n, max_size=n)))
    g = data.draw(arrays((n,) + shape[1:]))

    def ref(v):
        out = np.zeros(shape)
        for row, i in enumerate(idx):  # repeated indices add up
            out[i] += v[row]
        return out
    check_op(lambda t: F.index_add_scatter(t, idx, shape), [g], reference=ref,
             torch_fn=lambda t: T.zeros(shape, dtype=t.dtype).index_add(0, T.tensor(idx), t))
    x = data.draw(arrays(shape))  # <scatter(g), x> == <g, x[idx]>
    lhs = float(np.sum(F.index_add_scatter(tinygen.tensor(g), idx, shape).numpy() * x))
    assert abs(lhs - float(np.sum(g * x[idx]))) <= 1e-12 * (1 + np.sum(np.abs(g * x[idx])))


def test_cat_and_stack_of_one_tensor():
    x = tinygen.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    np.testing.assert_array_equal(F.cat([x], 1).detach().numpy(), x.detach().numpy())
    s = F.stack([x], -1)
    assert s.shape == (2, 3, 1)
    (s * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.full((2, 3), 2.0))


def test_views_share_memory_and_copies_do_not():
    x = tinygen.tensor(np.arange(12.0).reshape(3, 4))
    for view in (x.reshape(4, 3), x.transpose(0, 1), x[1:, ::2], x.unsqueeze(0)):
        assert np.shares_memory(view.numpy(), x.numpy())
    for copy in (x[np.array([0, 2])], x[x > 3], F.flip(x, 0), F.pad(x, (1, 1))):
        assert not np.shares_memory(copy.numpy(), x.numpy())


def test_shape_errors_name_the_shapes():
    x = tinygen.tensor(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match="cannot be broadcast"):
        x.broadcast_to((2, 4))
    with pytest.raises(ValueError, match="tensors\\[1\\] has shape"):
        F.cat([x, tinygen.tensor(np.zeros((3, 2)))], 0)
    with pytest.raises(ValueError, match="must name all"):
        x.permute(0)
    with pytest.raises(IndexError, match="out of range"):
        x.transpose(0, 2)
    with pytest.raises(IndexError, match=r"shape \(2, 3\)"):
        x[5]
    with pytest.raises(ValueError, match="crop more"):
        F.pad(x, (-4, 0))
    with pytest.raises(ValueError, match="mode must be"):
        F.pad(x, (1, 1), mode="mirror")
    with pytest.raises(ValueError, match="even length"):
        F.pad(x, (1, 1, 1))
    with pytest.raises(ValueError, match=r"stack: tensors\[1\] has shape \(3, 2\)"):
        F.stack([x, tinygen.tensor(np.zeros((3, 2)))])
    with pytest.raises(ValueError, match="non-empty"):
        F.cat([])
    with pytest.raises(ValueError, match=r"sizes \(4,\) do not multiply to 3"):
        F.unflatten(x, 1, (4,))
    with pytest.raises(ValueError, match="split_size must be positive"):
        F.split(x, 0)
    with pytest.raises(ValueError, match="chunks must be positive"):
        F.chunk(x, 0)
    with pytest.raises(ValueError, match=r"\(2, 3\) is not a broadcast of \(2,\)"):
        F.sum_to(x, (2,))
    with pytest.raises(ValueError, match="fewer axes"):
        x.expand(3)
