"""DCN-v2 purchase-propensity network: embeddings for id and categorical fields plus dense
features, a cross network for explicit feature interactions and an MLP, fused into one logit.

References:
    Wang, R., Shivanna, R., Cheng, D. Z., Jain, S., Lin, D., Hong, L., & Chi, E. H. (2021).
    DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale Learning to Rank
    Systems. WWW '21.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field


class DeepConfig(BaseModel):
    model_config = {"frozen": True}

    embedding_dim: int = Field(default=16, ge=2)
    user_buckets: int = Field(default=100_003, ge=2, description="hashed user-id embedding rows")
    cross_layers: int = Field(default=3, ge=0)
    hidden: tuple[int, ...] = (256, 128)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    epochs: int = Field(default=8, ge=1)
    # The model that is kept is the epoch with the best validation log loss (as LightGBM's
    # early stopping): at 1M users validation AUC peaked at epoch 2 of 4 and then fell.
    early_stopping_epochs: int = Field(
        default=2, ge=1, description="stop after this many epochs without a better valid loss"
    )
    batch_size: int = Field(default=4096, ge=1)
    learning_rate: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    # Sale-level features (discount depth, sale hour, ...) are constant within a sale, so a
    # training set of a few sales holds a few distinct values of each, and a network can only
    # extrapolate them linearly to a new sale's values (trees cannot extrapolate: LightGBM
    # scored the same with and without them). Measured at 1M users, two training sales:
    # crossed with the user features they reorder a sale's users (-0.007 test AUC); entered
    # additively ("wide") they shift the new sale's level and ruin its calibration (validation
    # log loss 0.31-0.35 against 0.27), so early stopping picks epoch 1. Left out ("none")
    # until training spans enough sales to learn what they do.
    sale_features: Literal["none", "wide", "crossed"] = "none"


def build_model(
    n_dense: int,
    cardinalities: list[int],
    config: DeepConfig,
    sale_columns: Sequence[int] = (),
):
    """A DCN-v2 ``torch.nn.Module`` taking ``(dense float[B, n_dense], cats long[B, n_cat])``.

    ``sale_columns`` are the dense columns of sale-level features; ``config.sale_features``
    says whether they are left out, enter the logit through one linear layer ("wide"), or
    go through the cross and deep networks with the rest.
    """
    import torch
    from torch import nn

    class CrossLayer(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.linear = nn.Linear(width, width)

        def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return x0 * self.linear(x) + x

    class DCNv2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = nn.ModuleList(
                nn.Embedding(card, config.embedding_dim) for card in cardinalities
            )
            sale = set(sale_columns) if config.sale_features != "crossed" else set()
            wide = sorted(sale) if config.sale_features == "wide" else []
            crossed = [c for c in range(n_dense) if c not in sale]
            self.register_buffer("crossed_columns", torch.tensor(crossed, dtype=torch.long))
            self.register_buffer("wide_columns", torch.tensor(wide, dtype=torch.long))
            self.wide = nn.Linear(len(wide), 1, bias=False) if wide else None
            width = len(crossed) + config.embedding_dim * len(cardinalities)
            self.dense_norm = nn.BatchNorm1d(n_dense)
            self.cross = nn.ModuleList(CrossLayer(width) for _ in range(config.cross_layers))
            layers: list[nn.Module] = []
            previous = width
            for size in config.hidden:
                layers += [nn.Linear(previous, size), nn.ReLU(), nn.Dropout(config.dropout)]
                previous = size
            self.deep = nn.Sequential(*layers)
            self.head = nn.Linear(width + previous, 1)

        def forward(self, dense: torch.Tensor, cats: torch.Tensor) -> torch.Tensor:
            normed = self.dense_norm(dense)
            parts = [normed.index_select(1, self.crossed_columns)]
            parts += [emb(cats[:, i]) for i, emb in enumerate(self.embeddings)]
            x0 = torch.cat(parts, dim=1)
            x = x0
            for layer in self.cross:
                x = layer(x0, x)
            logit = self.head(torch.cat([x, self.deep(x0)], dim=1))
            if self.wide is not None:
                logit = logit + self.wide(normed.index_select(1, self.wide_columns))
            return logit.squeeze(1)

    return DCNv2()
