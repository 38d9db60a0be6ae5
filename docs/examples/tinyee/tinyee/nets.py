"""A small early-exit CNN in plain torch: two conv stages, one exit after each, a final head.

It knows nothing of ddnnsim: ``forward`` returns the exits' class scores as a tuple, shallowest
first, the final classifier last, which is the chain form ddnnsim reads (docs/plugins.md).
"""

from __future__ import annotations

from torch import nn


class TinyEE(nn.Module):
    """conv-relu-pool x 2 with an exit branch after the first stage, then a linear head."""

    def __init__(self, input_shape, n_classes: int, width: int = 8, hidden: int = 32):
        super().__init__()
        c, h, w = input_shape
        self.stage1 = nn.Sequential(nn.Conv2d(c, width, 3, padding=1), nn.ReLU(),
                                    nn.MaxPool2d(2, ceil_mode=True))
        h1, w1 = -(-h // 2), -(-w // 2)
        self.exit1 = nn.Sequential(nn.Flatten(), nn.Linear(width * h1 * w1, n_classes))
        self.stage2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
                                    nn.MaxPool2d(2, ceil_mode=True))
        h2, w2 = -(-h1 // 2), -(-w1 // 2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * h2 * w2, hidden), nn.ReLU(),
                                  nn.Linear(hidden, n_classes))

    def forward(self, x):
        x = self.stage1(x)
        early = self.exit1(x)
        return early, self.head(self.stage2(x))


def build(input_shape, n_classes: int, width: int = 8, hidden: int = 32) -> TinyEE:
    """Tiny early-exit CNN: exit1 after the first conv stage, final after the second."""
    return TinyEE(input_shape, n_classes, width, hidden)
