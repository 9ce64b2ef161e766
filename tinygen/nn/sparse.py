"""``Embedding``: a lookup table of learned vectors (PyTorch's ``nn.Embedding``)."""
from __future__ import annotations

import numbers

from .. import functional as F
from ..autograd import no_grad
from ..tensor import empty
from . import init
from .module import Module, Parameter

__all__ = ["Embedding"]


class Embedding(Module):
    """``weight`` (num_embeddings, embedding_dim), initialized N(0, 1) as in PyTorch (the row
    ``padding_idx``, when given, zero and never updated). ``embedding(idx)`` for an integer
    tensor ``idx`` of any shape gives ``idx.shape + (embedding_dim,)``. Not supported:
    ``max_norm``, ``sparse=True``."""

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None,
                 norm_type=2.0, scale_grad_by_freq=False, sparse=False, _weight=None,
                 _freeze=False, device=None, dtype=None):
        super().__init__()
        for name, v in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"Embedding: {name} must be a positive int, got {v!r}")
        if max_norm is not None or scale_grad_by_freq or sparse:
            raise ValueError("Embedding: max_norm, scale_grad_by_freq and sparse are not "
                             "supported")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} is out of range for "
                                 f"{num_embeddings} embeddings")
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = padding_idx
        if _weight is None:
            self.weight = Parameter(empty(num_embeddings, embedding_dim, dtype=dtype,
                                          device=device), requires_grad=not _freeze)
            self.reset_parameters()
        else:
            if tuple(_weight.shape) != (num_embeddings, embedding_dim):
                raise ValueError(f"Embedding: _weight must have shape "
                                 f"{(num_embeddings, embedding_dim)}, got {tuple(_weight.shape)}")
            self.weight = Parameter(_weight, requires_grad=not _freeze)

    def reset_parameters(self, generator=None):
        init.normal_(self.weight, generator=generator)
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx] = 0.0

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None):
        """An embedding holding ``embeddings`` (2-D), frozen unless ``freeze=False``."""
        if embeddings.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D, got shape "
                             f"{tuple(embeddings.shape)}")
        return cls(embeddings.shape[0], embeddings.shape[1], padding_idx=padding_idx,
                   _weight=embeddings.detach().clone(), _freeze=freeze)

    def forward(self, input):
        return F.embedding(input, self.weight, self.padding_idx)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + ("" if self.padding_idx is None else f", padding_idx={self.padding_idx}")
