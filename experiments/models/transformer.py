"""A small decoder-only transformer for character-level language modelling: the GPT layout (Radford et al.,
"Language Models are Unsupervised Multitask Learners", 2019; as written out in Karpathy's nanoGPT) at a few
ten-thousand parameters.

    token embedding (vocab → d) + learned position embedding (context → d)
    layers × [ x + attention(LN(x)),  x + MLP(LN(x)) ]     pre-norm residual blocks
        attention: heads × causal scaled dot-product attention, one d → 3d projection in, d → d out
        MLP: d → 4d, GELU, 4d → d
    LN, linear head (d → vocab)

Width d = 32 with 2 layers: 29,860 parameters for the corpus's 36-character alphabet; d = 64: 108,836. No dropout
(the runs are short and the corpus is generated without end: tasks/text.py). Initial weights: PyTorch's defaults
for each layer (embeddings N(0, 1), linear layers Kaiming-uniform, LayerNorm at 1 and 0), drawn from the seed by
the task that builds it. conf/experiment/charlm.yaml names it.
"""

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"the width {width} is not a multiple of heads={heads}")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.heads, D // self.heads).unbind(2)
        attended = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                  is_causal=True)
        x = x + self.out(attended.transpose(1, 2).reshape(B, T, D))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class CharTransformer(nn.Module):
    """Tokens (B, T) → next-token logits (B, T, vocab), T ≤ context."""

    def __init__(self, vocab: int, width: int, layers: int = 2, heads: int = 2, context: int = 64):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, width), nn.Embedding(context, width)
        self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(layers)))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)

    def forward(self, tokens):
        positions = torch.arange(tokens.shape[-1], device=tokens.device)
        return self.head(self.norm(self.blocks(self.tokens(tokens) + self.positions(positions))))


def network(vocab: int, width: int, layers: int = 2, heads: int = 2, context: int = 64) -> CharTransformer:
    return CharTransformer(vocab, width, layers, heads, context)
