"""Every member's rows, as padded index tensors over shared feature rows.

A member's training (or validation) rows are a ``TensorData`` whose
targets are ``y``, ``(y, weight)``, or with distillation ``(y, teacher)``
and ``(y, teacher, weight)``; here they become ``(K, n_max)`` tensors: the
positions of the rows in one feature store (members that share an input
array, such as the CV folds of one ``X``, share it), the targets, any
extra targets (the teacher's outputs) and the weights, padded past each
member's own rows with weight zero.
"""

import torch

__all__ = ["Rows", "pad"]


def pad(t, n):
    """``t`` padded to ``n`` rows by repeating its first row (zeros if it has none)."""
    if len(t) == n:
        return t
    fill = t[:1].expand(n - len(t), *t.shape[1:]) if len(t) else torch.zeros(n - len(t), *t.shape[1:], dtype=t.dtype)
    return torch.cat([t, fill])


def _parts(data, weighted):
    """``(X, [y, *extras], weight or None, rows)`` of a ``TensorData``."""
    rows = data.rows if data.rows is not None else torch.arange(len(data.X))
    target = data.y
    parts = list(target) if isinstance(target, (tuple, list)) else [target]
    weight = parts.pop() if weighted else None
    return data.X, parts, weight, rows


def _gather(t, positions):
    if t.dim() == 2:
        return t.gather(1, positions)
    index = positions.view(*positions.shape, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:])
    return t.gather(1, index)


class Rows:
    """The rows of K members; ``weighted[k]`` says member ``k``'s targets end with weights."""

    def __init__(self, datas, weighted):
        stores, offsets, rows, parts, weights = [], {}, [], [], []
        for data, w in zip(datas, weighted):
            X, targets, weight, r = _parts(data, w)
            key = (X.data_ptr(), tuple(X.shape))
            if key not in offsets:
                offsets[key] = sum(len(s) for s in stores)
                stores.append(X)
            rows.append(r + offsets[key])
            parts.append([t[r] for t in targets])
            weights.append(torch.ones(len(r)) if weight is None else weight[r].float())
        self.X = stores[0] if len(stores) == 1 else torch.cat(stores)
        self.n = torch.tensor([len(r) for r in rows])
        n_max = int(self.n.max())
        self.rows = torch.stack([pad(r, n_max) for r in rows])
        self.targets = [torch.stack([pad(p[i], n_max) for p in parts]) for i in range(len(parts[0]))]
        self.valid = torch.arange(n_max).unsqueeze(0) < self.n.unsqueeze(1)
        self.weight = torch.stack([pad(w, n_max) for w in weights]) * self.valid

    @property
    def target(self):
        return self.targets[0]

    def keep(self, index):
        self.n, self.rows, self.valid, self.weight = self.n[index], self.rows[index], self.valid[index], self.weight[index]
        self.targets = [t[index] for t in self.targets]

    def batch(self, positions):
        """Inputs, targets, extra targets and weights at ``positions`` (``(K, b)`` into each member's rows)."""
        rows = self.rows.gather(1, positions)
        xb = self.X[rows.reshape(-1)].reshape(*rows.shape, -1)
        yb, *extras = [_gather(t, positions) for t in self.targets]
        return xb, yb, extras, self.weight.gather(1, positions)
