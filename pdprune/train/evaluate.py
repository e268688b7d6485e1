"""Loss, top-1 / top-5 accuracy and (two classes) F1 over a loader."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device,
             amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """{'loss', 'top1'} plus 'top5' when there are more than 5 classes and 'f1' (of class 1,
    GLUE's convention for QQP / MRPC) when there are two. One host sync at the end."""
    was_training = model.training
    model.eval()
    loss = torch.zeros((), device=device)
    top1 = torch.zeros((), device=device, dtype=torch.long)
    top5 = torch.zeros((), device=device, dtype=torch.long)
    confusion = torch.zeros(3, device=device, dtype=torch.long)  # class 1: tp, fp, fn
    seen, classes = 0, 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            logits = model(x)
        logits = logits.float()
        classes = logits.shape[1]
        loss += F.cross_entropy(logits, y, reduction="sum")
        ranked = logits.topk(min(5, classes), dim=1).indices
        top1 += (ranked[:, 0] == y).sum()
        top5 += (ranked == y[:, None]).any(dim=1).sum()
        said, truth = ranked[:, 0] == 1, y == 1
        confusion += torch.stack([(said & truth).sum(), (said & ~truth).sum(),
                                  (~said & truth).sum()])
        seen += len(y)
    model.train(was_training)
    result = {"loss": loss.item() / max(1, seen), "top1": top1.item() / max(1, seen)}
    if classes > 5:
        result["top5"] = top5.item() / max(1, seen)
    if classes == 2:
        tp, fp, fn = confusion.tolist()
        result["f1"] = 2 * tp / max(1, 2 * tp + fp + fn)
    return result
