"""User models: each user id maps to T_u vectors of the LM's hidden size (a soft prompt).

Id 0 is the generic user, used for anyone not seen in training. Known users are
1..N; ``UserIndex`` maps the application's user ids (strings) to those rows.
"""

from __future__ import annotations

import torch
from torch import nn

GENERIC = 0


class UserIndex:
    """Application user id (str) <-> row in the user model; row 0 is the generic user."""

    def __init__(self, users: list[str] | None = None):
        self.users: list[str] = []
        self._rows: dict[str, int] = {}
        for u in users or []:
            self.add(u)

    def add(self, user_id: str) -> int:
        if user_id in self._rows:
            raise ValueError(f"user {user_id!r} is already in the index")
        self.users.append(user_id)
        self._rows[user_id] = len(self.users)
        return self._rows[user_id]

    def row(self, user_id: str | None) -> int:
        """The user's row, or the generic row for an unknown user."""
        return self._rows.get(user_id, GENERIC) if user_id is not None else GENERIC

    def __contains__(self, user_id: str) -> bool:
        return user_id in self._rows

    def __len__(self) -> int:
        return len(self.users)

    def to_json(self) -> dict:
        return {"generic_row": GENERIC, "users": {u: i + 1 for i, u in enumerate(self.users)}}

    @classmethod
    def from_json(cls, data: dict) -> "UserIndex":
        ordered = sorted(data["users"].items(), key=lambda kv: kv[1])
        if [row for _, row in ordered] != list(range(1, len(ordered) + 1)):
            raise ValueError("user index rows must be 1..N without gaps")
        return cls([u for u, _ in ordered])


def token_rows(embedding: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """n randomly chosen rows of the (V, H) token-embedding matrix, copied: returns (n, H)."""
    idx = torch.randint(0, embedding.shape[0], (n,), generator=generator)
    return embedding[idx].detach().clone().float()


class IndividualUserModel(nn.Module):
    """e_i = e_0 + o_i with a learned generic set e_0 and one offset set per user.

    Every known user starts at its own copy of random token-embedding rows
    (o_i = rows_i - e_0), so users are distinguishable from step 0; a user added
    later (fast fit) starts at the generic user (o = 0).
    """

    kind = "individual"

    def __init__(self, n_users: int, n_tokens: int, hidden: int, *, init_embedding: torch.Tensor | None = None,
                 seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        if init_embedding is None:
            init_embedding = torch.randn(1000, hidden, generator=g) * 0.02
        generic = token_rows(init_embedding, n_tokens, g)  # (T, H)
        users = token_rows(init_embedding, n_users * n_tokens, g).view(n_users, n_tokens, hidden)  # (N, T, H)
        self.generic = nn.Parameter(generic)  # (T, H)
        self.offsets = nn.Parameter(users - generic)  # (N, T, H); row u-1 belongs to user row u
        self.n_tokens, self.hidden = n_tokens, hidden

    @property
    def n_users(self) -> int:
        return self.offsets.shape[0]

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """rows: (B,) long user rows (0 = generic); returns (B, T, H)."""
        padded = torch.cat([torch.zeros_like(self.offsets[:1]), self.offsets])  # (N+1, T, H), o_0 = 0
        return self.generic.unsqueeze(0) + padded[rows]  # (B, T, H)

    def new_user_parameter(self) -> nn.Parameter:
        """What fast fit optimises for a new user: its offset, starting at the generic user."""
        return nn.Parameter(torch.zeros_like(self.generic))  # (T, H)

    def vectors_from(self, param: torch.Tensor) -> torch.Tensor:
        return self.generic + param  # (T, H)

    def parameter_of(self, row: int) -> torch.Tensor:
        """A copy of an existing row's parameter (a refit can start from where training left a user)."""
        return self.offsets.data[row - 1].clone() if row != GENERIC else torch.zeros_like(self.generic.data)

    @torch.no_grad()
    def add_user(self, param: torch.Tensor | None = None) -> int:
        """Append a row (fast-fit result, or the generic user) without touching the others; returns its row."""
        new = torch.zeros_like(self.generic) if param is None else param.detach().to(self.generic)
        self.offsets = nn.Parameter(torch.cat([self.offsets.data, new.unsqueeze(0)]))
        return self.n_users


class ClusterUserModel(nn.Module):
    """e_i = sum_k softmax(w_i)_k c_k: K shared component sets, one weight row per user (row 0 generic)."""

    kind = "cluster"

    def __init__(self, n_users: int, n_tokens: int, hidden: int, *, n_clusters: int = 10,
                 init_embedding: torch.Tensor | None = None, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        if init_embedding is None:
            init_embedding = torch.randn(1000, hidden, generator=g) * 0.02
        comps = token_rows(init_embedding, n_clusters * n_tokens, g).view(n_clusters, n_tokens, hidden)
        self.components = nn.Parameter(comps)  # (K, T, H)
        # The generic user starts as the uniform mixture; every known user at its own random mixture
        # (unit-normal logits), so users are distinguishable from step 0, as in the individual model.
        weights = torch.randn(n_users + 1, n_clusters, generator=g)
        weights[GENERIC] = 0.0
        self.weights = nn.Parameter(weights)  # (N+1, K)
        self.n_tokens, self.hidden = n_tokens, hidden

    @property
    def n_users(self) -> int:
        return self.weights.shape[0] - 1

    def mixture(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.weights[rows], dim=-1)  # (B, K)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """rows: (B,) long user rows (0 = generic); returns (B, T, H)."""
        return torch.einsum("bk,kth->bth", self.mixture(rows), self.components)  # (B, T, H)

    def new_user_parameter(self) -> nn.Parameter:
        return nn.Parameter(self.weights.data[GENERIC].clone())  # (K,), starts as the generic mixture

    def vectors_from(self, param: torch.Tensor) -> torch.Tensor:
        return torch.einsum("k,kth->th", torch.softmax(param, -1), self.components)  # (T, H)

    def parameter_of(self, row: int) -> torch.Tensor:
        return self.weights.data[row].clone()  # (K,)

    @torch.no_grad()
    def add_user(self, param: torch.Tensor | None = None) -> int:
        new = self.weights.data[GENERIC] if param is None else param.detach().to(self.weights)
        self.weights = nn.Parameter(torch.cat([self.weights.data, new.unsqueeze(0)]))
        return self.n_users


USER_MODELS = {"individual": IndividualUserModel, "cluster": ClusterUserModel}


def build_user_model(kind: str, n_users: int, n_tokens: int, hidden: int, *, init_embedding: torch.Tensor,
                     n_clusters: int = 10, seed: int = 0) -> nn.Module | None:
    """The configured user model, or None for plain (non-personalized) training."""
    if kind == "none":
        return None
    extra = {"n_clusters": n_clusters} if kind == "cluster" else {}
    return USER_MODELS[kind](n_users, n_tokens, hidden, init_embedding=init_embedding, seed=seed, **extra)
