"""The sequence autoencoder: a GRU encoder to a fixed-size code, a GRU decoder back to the series.

    encoder:  x (B, T, C) -> patches (B, S, p*C), S = ceil(T / p)
              -> recurrent layer (lengths=) -> last state of the top layer (B, H) -> Linear -> code (B, K)
    decoder:  h0 = tanh(Linear(code)) for each of its L layers
              input at step s: the code (default), or [code, patch s-1] with teacher forcing
              -> recurrent layer -> Linear -> (B, S, p*C) -> (B, T, C)

Decoder inputs (Srivastava et al. 2015 call these the unconditioned and the
conditioned decoder). By default the decoder sees the code at every step and
nothing else: one parallel pass, no exposure bias, and everything it
reconstructs has to pass through the code. With ``teacher_forcing`` it also
sees the previous patch: the true one in training, its own output when
scoring (one step at a time), which eases training but lets the decoder lean
on its inputs instead of the code.

The loss is the mean squared error over each series' valid steps (padding is masked).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from ._sequence import batches, patch_steps
from .cells import Cell


class SequenceAutoencoder(nn.Module):
    """GRU encoder-decoder over ``channels``-wide series fed ``patch`` steps at a time."""

    def __init__(
        self,
        channels: int,
        *,
        hidden_size: int = 64,
        code_size: int = 16,
        num_layers: int = 1,
        patch: int = 1,
        teacher_forcing: bool = False,
        cell: Cell = Cell(),
    ) -> None:
        super().__init__()
        self.channels, self.patch, self.teacher_forcing, self.num_layers = channels, patch, teacher_forcing, num_layers
        width = channels * patch
        self.encoder = cell.layer(width, hidden_size, num_layers=num_layers)
        self.to_code = nn.Linear(hidden_size, code_size)
        self.from_code = nn.Linear(code_size, num_layers * hidden_size)
        self.decoder = cell.layer(code_size + (width if teacher_forcing else 0), hidden_size, num_layers=num_layers)
        self.out = nn.Linear(hidden_size, width)

    def encode(self, x: Tensor, lengths: Tensor) -> Tensor:  # (B, T, C), (B,) -> (B, K)
        xp, lp = patch_steps(x, lengths, self.patch) if self.patch > 1 else (x, lengths)  # (B, S, p*C)
        _, h_n = self.encoder(xp, lengths=lp)  # (L, B, H)
        return self.to_code(h_n[-1])

    def decode(self, code: Tensor, steps: int, target: Tensor | None = None) -> Tensor:  # (B, K) -> (B, S, p*C)
        B = code.shape[0]
        h = torch.tanh(self.from_code(code)).view(B, self.num_layers, -1).transpose(0, 1).contiguous()  # (L, B, H)
        given = code[:, None, :].expand(B, steps, code.shape[1])  # (B, S, K)
        if not self.teacher_forcing:
            out, _ = self.decoder(given, h)
            return self.out(out)
        width = self.channels * self.patch
        if target is not None:  # teacher forcing: the true previous patch, all steps at once
            previous = torch.cat([target.new_zeros(B, 1, width), target[:, :-1]], dim=1)  # (B, S, p*C)
            out, _ = self.decoder(torch.cat([given, previous], dim=2), h)
            return self.out(out)
        previous, outs = code.new_zeros(B, 1, width), []
        for s in range(steps):  # free running: its own previous patch
            out, h = self.decoder(torch.cat([given[:, s : s + 1], previous], dim=2), h)
            previous = self.out(out)  # (B, 1, p*C)
            outs.append(previous)
        return torch.cat(outs, dim=1)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:  # (B, T, C) -> reconstruction (B, T, C)
        B, T, C = x.shape
        code = self.encode(x, lengths)
        steps = -(-T // self.patch)
        target = None
        if self.training and self.teacher_forcing:
            target, _ = patch_steps(x, lengths, self.patch) if self.patch > 1 else (x, lengths)
        y = self.decode(code, steps, target)  # (B, S, p*C)
        return y.reshape(B, steps * self.patch, C)[:, :T]


def valid_mask(lengths: Tensor, T: int) -> Tensor:
    """(B, T, 1) True on each series' valid steps."""
    return (torch.arange(T)[None, :] < lengths[:, None]).unsqueeze(-1)


def step_errors(x: Tensor, recon: Tensor, lengths: Tensor) -> Tensor:
    """(B, T) squared error per step, averaged over channels; zero on padding."""
    return ((recon - x) ** 2).mean(-1) * valid_mask(lengths, x.shape[1])[..., 0]


def masked_mse(x: Tensor, recon: Tensor, lengths: Tensor) -> Tensor:
    return step_errors(x, recon, lengths).sum() / lengths.sum().to(x.dtype)


@torch.no_grad()
def run(model: SequenceAutoencoder, x: Tensor, lengths: Tensor, batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """Codes (N, K) and reconstructions (N, T, C) of all N series, in order, the model in eval mode."""
    model.eval()
    codes, recons = [], []
    for xb, lb, _ in batches(x, lengths, torch.zeros(len(lengths)), batch_size):
        code = model.encode(xb, lb)
        r = model.decode(code, -(-xb.shape[1] // model.patch)).reshape(len(xb), -1, xb.shape[2])[:, : xb.shape[1]]
        codes.append(code.float())
        recons.append(torch.nn.functional.pad(r.float(), (0, 0, 0, x.shape[1] - xb.shape[1])))
    return torch.cat(codes), torch.cat(recons)


class Objective:
    """Reconstruction MSE on the training series; the validation MSE (free-running decoder) picks the epoch."""

    monitor, mode = "val_loss", "min"
    labels: ClassVar[dict[str, str]] = {"val_loss": "validation reconstruction MSE"}

    def __init__(self, fit: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], batch_size: int) -> None:
        self.fit, self.val, self.batch_size = fit, val, batch_size

    def batches(self, epoch: int, gen: torch.Generator):
        x, ln = self.fit
        return [(xb, lb) for xb, lb, _ in batches(x, ln, torch.zeros(len(ln)), self.batch_size, gen)]

    def loss(self, model, batch) -> Tensor:
        x, ln = batch
        return masked_mse(x, model(x, ln), ln)

    def validate(self, model) -> dict[str, float]:
        x, ln = self.val
        _, recon = run(model, x, ln)
        return {"val_loss": masked_mse(x, recon, ln).item()}
