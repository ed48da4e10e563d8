"""The sentence-embedding head: transformer -> mean pooling over real tokens -> L2 norm.

One `nn.Module` used both by the PyTorch backend and by the ONNX export, so the exported graph
computes exactly what the server serves. Pooling and normalisation run in float32 whatever the
transformer's dtype, so half-precision backends lose accuracy only inside the transformer.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

POOLING = "mean"
NORMALIZE = "l2"


def mean_pool_normalize(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average the token vectors where `attention_mask` is 1, then scale each row to unit length."""
    hidden = hidden.float()
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    pooled = summed / counts
    return nn.functional.normalize(pooled, p=2.0, dim=1, eps=1e-12)


class SentenceEncoder(nn.Module):
    """`(input_ids, attention_mask) -> float32 [batch, dim]` unit-norm sentence embeddings."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer
        # BERT-style models take segment ids; one segment, so they are all zero. Others (DistilBERT) do not.
        self._segment_ids = "token_type_ids" in inspect.signature(transformer.forward).parameters

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        extra = {"token_type_ids": torch.zeros_like(input_ids)} if self._segment_ids else {}
        output = self.transformer(
            input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **extra
        )
        return mean_pool_normalize(output.last_hidden_state, attention_mask)
