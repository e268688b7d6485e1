"""PDP to 90% sparsity inside your own PyTorch training loop (docs/api.md).

A small CNN of our own (not from pdprune's zoo) learns scikit-learn's 8x8 digits, which ship
with scikit-learn (no download). Pruning adds three calls to an ordinary loop: step() after
each optimizer step, end_epoch() after each epoch, finalize() at the end.

    python examples/custom_loop.py          # ~20 s on 2 CPU cores
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import pdprune

EPOCHS = 10


class SmallCNN(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 128), nn.ReLU(),
                                  nn.Linear(128, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def digits_loaders(batch_size: int = 64) -> tuple[DataLoader, DataLoader]:
    """1,797 images in [0, 1], a seeded 80/20 split."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, test = order[:1437], order[1437:]
    return (DataLoader(TensorDataset(x[train], y[train]), batch_size, shuffle=True,
                       drop_last=True),
            DataLoader(TensorDataset(x[test], y[test]), 512))


@torch.no_grad()
def accuracy(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader)
    model.train()
    return correct / len(loader.dataset)


def main() -> None:
    torch.manual_seed(0)
    train_loader, test_loader = digits_loaders()
    model = SmallCNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS)

    # every Conv2d and Linear weight but the classifier's; PDP's default schedule: one dense
    # warm-up epoch, soft masks ramping to 90% by mid-training, hardened at the end
    pruning = pdprune.Pruning(model, method="pdp", sparsity=0.9,
                              steps_per_epoch=len(train_loader), epochs=EPOCHS,
                              settings={"method.tau": 3e-4})

    for epoch in range(EPOCHS):
        for x, y in train_loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            pruning.step()  # the masks for the next step
        pruning.end_epoch()
        scheduler.step()
        print(f"epoch {epoch + 1:2d}  mask sparsity {pruning.target_sparsity:.3f}  "
              f"test accuracy {accuracy(model, test_loader):.3f}", flush=True)

    summary = pruning.finalize()  # harden the masks, bake the zeros into the weights
    print(f"final test accuracy {accuracy(model, test_loader):.3f} "
          f"({summary['pruned_weights']} of {summary['prunable_weights']} weights pruned "
          f"in {len(summary['layers'])} layers)")
    print(f"achieved sparsity: {summary['achieved_sparsity']:.3f}")


if __name__ == "__main__":
    main()
