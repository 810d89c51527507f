"""grukit.GRU: a drop-in replacement for torch.nn.GRU (grukit.GRUCell is in grukit.cell)."""

from __future__ import annotations

import math
import operator
import warnings
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from . import _checks, backend, functional
from .errors import ShapeError
from .functional.layer import layer_masks
from .kernels import DTYPES as _KERNEL_DTYPES


class GRU(nn.Module):
    r"""A multi-layer gated recurrent unit, computed as torch.nn.GRU computes it.

    For each element of the input sequence each layer computes::

        r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))       reset_after=True
        n_t = tanh(W_in x_t + b_in + W_hn (r_t * h_{t-1}) + b_hn)       reset_after=False
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    The input of layer k > 0 is the output of layer k - 1 (both directions
    concatenated), with dropout applied in training mode when ``dropout > 0``.

    Args:
        input_size: I, features of each input step.
        hidden_size: H, features of the hidden state.
        num_layers: L, stacked layers. Default 1.
        bias: if False, no ``b_ih`` / ``b_hh``. Default True.
        batch_first: input and output are (B, T, feature). Default False.
        dropout: dropout on the outputs of every layer but the last. Default 0.
        bidirectional: D = 2 if True. Default False.
        reset_after: keyword only. True (default) is the torch.nn.GRU / cuDNN /
            Keras 3 convention, False is Cho et al. 2014's original.
        compute_dtype: keyword only. If set (e.g. ``torch.bfloat16``), the
            layer computes in this dtype while its parameters keep theirs:
            each forward casts input, hx and weights (differentiably, so the
            gradients arrive in the parameters' dtype) and casts output and
            h_n back to the input's dtype: mixed precision. Default None.

    Cell options (keyword only, all off by default: then the layer is
    torch.nn.GRU to the letter; equations and papers in grukit.functional):
        layer_norm: LayerNorm-GRU (Ba et al. 2016, as Haste's LayerNormGRU):
            W x and U h are each layer-normalised over their 3H features, with
            their own gain and bias, before the biases and gates combine them.
            Needs reset_after=True.
        zoneout: p of zoneout (Krueger et al. 2017): in training each unit
            keeps its previous value with probability p, a fresh mask per
            step; in eval h_t = p h_{t-1} + (1 - p) h'_t.
        recurrent_dropout: p of one dropout mask per sequence on h_{t-1}
            where it enters the gates (Gal & Ghahramani 2016).
        input_dropout: p of one dropout mask per sequence on every layer's
            input, the same at every step.
        weight_dropout: p of DropConnect on every weight_hh, one mask per
            forward (Wan et al. 2013; AWD-LSTM).
        Masks come from ``self.generator`` (a torch.Generator) if set, else
        torch's global RNG; they are drawn only in training mode.

    Inputs: ``input, hx=None, *, lengths=None``
        input: (T, B, I), (B, T, I) if batch_first, (T, I) unbatched, or a
            PackedSequence.
        hx: (L*D, B, H), or (L*D, H) for unbatched input. Zeros if omitted.
        lengths: optional 1-D integer tensor of B lengths in [1, T] for a
            right-padded batch (grukit extension).

    Outputs: ``output, h_n``
        output: (T, B, D*H) ((B, T, D*H) if batch_first, (T, D*H) unbatched,
            PackedSequence if the input was packed). Steps past a sequence's
            length are zero.
        h_n: (L*D, B, H): each sequence's final state (for the reverse
            direction, the state after step 0).

    Attributes:
        weight_ih_l{k}[_reverse]: (3H, I) for k = 0 else (3H, D*H), gates r|z|n.
        weight_hh_l{k}[_reverse]: (3H, H).
        bias_ih_l{k}[_reverse], bias_hh_l{k}[_reverse]: (3H,).
        All initialised from U(-1/sqrt(H), 1/sqrt(H)), as torch.nn.GRU.
        With layer_norm, also ln_gain_ih_l{k}[_reverse], ln_bias_ih_l{k}[_reverse]
        (the norm of W x) and ln_gain_hh_l{k}[_reverse], ln_bias_hh_l{k}[_reverse]
        (the norm of U h), (3H,) each, gates r|z|n, initialised to 1 and 0.

    Notes:
        The parameter names, shapes, order and initialisation are torch.nn.GRU's,
        so a torch.nn.GRU state_dict loads unchanged (see :meth:`from_torch`).
        Departures: the ``lengths`` keyword and ``reset_after``; no ``proj_size``;
        ``torch.autocast`` leaves the precision alone (set ``compute_dtype`` for
        bfloat16), where torch.nn.GRU's products would follow it on the CPU; not
        a subclass of torch.nn.RNNBase, though its public methods are here;
        ``torch.jit.trace`` works, ``torch.jit.script`` does not.
    """

    weight_ih_l0: Tensor  # registered in __init__ (the other parameters are read through their names)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        reset_after: bool = True,
        compute_dtype: torch.dtype | None = None,
        layer_norm: bool = False,
        zoneout: float = 0.0,
        recurrent_dropout: float = 0.0,
        input_dropout: float = 0.0,
        weight_dropout: float = 0.0,
        proj_size: int | None = None,
    ) -> None:
        super().__init__()
        if proj_size is not None:  # torch.nn.GRU refuses the keyword itself, whatever its value
            raise ValueError(
                "proj_size argument is only supported for LSTM, not RNN or GRU; grukit.GRU has no projections"
            )
        _checks.check_constructor(input_size, hidden_size, num_layers, dropout)
        _checks.check_flag("bias", bias)
        _checks.check_flag("batch_first", batch_first)
        if not isinstance(layer_norm, bool):
            raise TypeError(f"layer_norm must be a bool, got {type(layer_norm).__name__} ({layer_norm!r})")
        if layer_norm and not reset_after:
            raise ValueError(
                "layer_norm=True needs reset_after=True: the norm of U_n (r * h) has no place in the reset-before form"
            )
        self.zoneout = _checks.check_probability("zoneout", zoneout)
        self.recurrent_dropout = _checks.check_probability("recurrent_dropout", recurrent_dropout)
        self.input_dropout = _checks.check_probability("input_dropout", input_dropout)
        self.weight_dropout = _checks.check_probability("weight_dropout", weight_dropout)
        self.layer_norm = layer_norm
        self.generator: torch.Generator | None = None  # masks of the dropout options; None: torch's global RNG
        if compute_dtype is not None and not (
            isinstance(compute_dtype, torch.dtype) and compute_dtype.is_floating_point
        ):
            raise TypeError(f"compute_dtype must be a floating-point torch.dtype or None, got {compute_dtype!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout is applied between layers, so dropout > 0 with num_layers=1 has no effect",
                UserWarning,
                stacklevel=2,
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.reset_after = bool(reset_after)
        self.compute_dtype = compute_dtype
        self.mode = "GRU"
        self.proj_size = 0
        factory = {"device": device, "dtype": dtype}
        D = 2 if bidirectional else 1
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * D
            for d in range(D):
                suffix = f"_l{layer}" + ("_reverse" if d == 1 else "")
                params = {
                    "weight_ih" + suffix: torch.empty(3 * hidden_size, layer_in, **factory),
                    "weight_hh" + suffix: torch.empty(3 * hidden_size, hidden_size, **factory),
                }
                if self.bias:
                    params["bias_ih" + suffix] = torch.empty(3 * hidden_size, **factory)
                    params["bias_hh" + suffix] = torch.empty(3 * hidden_size, **factory)
                for name, value in params.items():
                    self.register_parameter(name, nn.Parameter(value))
                    self._flat_weights_names.append(name)
        self._norm_names: list[str] = []  # layer_norm: 4 per layer and direction, after torch's parameters
        if layer_norm:
            for layer in range(num_layers):
                for d in range(D):
                    suffix = f"_l{layer}" + ("_reverse" if d == 1 else "")
                    for name in ("ln_gain_ih", "ln_bias_ih", "ln_gain_hh", "ln_bias_hh"):
                        self.register_parameter(name + suffix, nn.Parameter(torch.empty(3 * hidden_size, **factory)))
                        self._norm_names.append(name + suffix)
        self._param_shapes = self._expected_shapes()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)) for torch.nn.GRU's parameters, in its order; layer-norm gains 1, biases 0."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name in self._flat_weights_names:
            nn.init.uniform_(getattr(self, name), -bound, bound)
        for name in self._norm_names:
            nn.init.constant_(getattr(self, name), 1.0 if "gain" in name else 0.0)

    # torch.nn.GRU's public helpers (its RNNBase's), for code written against it: training loops
    # that call flatten_parameters(), subclasses whose own forward calls the checks.
    def flatten_parameters(self) -> None:
        """Does nothing, as torch.nn.GRU's does off cuDNN (there it packs the weights into one
        buffer): grukit's kernels read each parameter where it lives."""

    def check_input(self, input: Tensor, batch_sizes: Tensor | None) -> None:
        """torch.nn.GRU's check of the input it is about to run: 3-D, or 2-D packed data when
        ``batch_sizes`` is given, its last size ``input_size`` and the weights' dtype. Raises what
        torch raises (ShapeError is a RuntimeError, DTypeError a ValueError), in its words, and
        (unlike torch's) an input on another device than the weights as a DeviceError."""
        _checks.check_same(input, "input", self.weight_ih_l0, rnn_words=True)
        rank = 2 if batch_sizes is not None else 3
        if input.dim() != rank:
            raise ShapeError(f"input must have {rank} dimensions, got {input.dim()} (shape {tuple(input.shape)})")
        if input.shape[-1] != self.input_size:
            raise ShapeError(
                "input.size(-1) must be equal to input_size. "
                f"Expected {self.input_size}, got {input.shape[-1]} (shape {tuple(input.shape)})"
            )

    def get_expected_hidden_size(self, input: Tensor, batch_sizes: Tensor | None) -> tuple[int, int, int]:
        """(num_layers * num_directions, batch, hidden_size): the batch is ``batch_sizes[0]`` for
        packed data, else the input's batch dimension (as torch.nn.GRU reads it)."""
        if batch_sizes is not None:
            batch = int(batch_sizes[0])
        else:
            batch = input.shape[0 if self.batch_first else 1]
        return (self.num_layers * self.num_directions, batch, self.hidden_size)

    def check_hidden_size(
        self, hx: Tensor, expected_hidden_size: tuple[int, ...], msg: str = "Expected hidden size {}, got {}"
    ) -> None:
        """ShapeError (a RuntimeError, as torch raises) with ``msg`` filled in when hx's shape differs."""
        if tuple(hx.shape) != tuple(expected_hidden_size):
            raise ShapeError(msg.format(expected_hidden_size, list(hx.shape)))

    def check_forward_args(self, input: Tensor, hidden: Tensor, batch_sizes: Tensor | None) -> None:
        """The input's checks, then the hidden state's shape against the one the input implies."""
        self.check_input(input, batch_sizes)
        self.check_hidden_size(hidden, self.get_expected_hidden_size(input, batch_sizes))

    def permute_hidden(self, hx: Tensor, permutation: Tensor | None) -> Tensor:
        """hx with its batch dimension (1) reordered by ``permutation`` (a PackedSequence's
        sorted_indices), or hx itself when there is none."""
        return hx if permutation is None else hx.index_select(1, permutation)

    def cell_options(self) -> list[str]:
        """The names of the cell options that are on (empty for the plain GRU)."""
        names = ["layer_norm"] if self.layer_norm else []
        return names + [
            n for n in ("zoneout", "recurrent_dropout", "input_dropout", "weight_dropout") if getattr(self, n) > 0
        ]

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """Per layer and direction: [w_ih, w_hh] (+ [b_ih, b_hh] with bias)."""
        per = 4 if self.bias else 2
        flat = [getattr(self, n) for n in self._flat_weights_names]
        return [flat[i : i + per] for i in range(0, len(flat), per)]

    def _layer_weights(self) -> list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]]:
        return [(w[0], w[1], w[2], w[3]) if self.bias else (w[0], w[1], None, None) for w in self.all_weights]

    def _norms(self) -> list[tuple[Tensor, Tensor, Tensor, Tensor]] | None:
        """(gain_ih, bias_ih, gain_hh, bias_hh) per layer and direction, or None without layer_norm."""
        if not self.layer_norm:
            return None
        flat = [getattr(self, n) for n in self._norm_names]
        return [tuple(flat[i : i + 4]) for i in range(0, len(flat), 4)]

    def _check_parameters(self, dtype: torch.dtype, device: torch.device) -> None:
        """Every parameter's shape, dtype and device, named, before a kernel reads it."""
        _checks.check_parameters(
            [(name, getattr(self, name), shape) for name, shape in self._param_shapes], dtype, device
        )

    def _expected_shapes(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """(name, expected shape) of every parameter, in registration order (fixed by the constructor)."""
        H, D = self.hidden_size, self.num_directions
        out = []
        for name in self._flat_weights_names + self._norm_names:
            layer = int(name.split("_l")[-1].split("_")[0])
            cols = self.input_size if layer == 0 else D * H
            shape = (
                (3 * H, cols)
                if name.startswith("weight_ih")
                else (3 * H, H)
                if name.startswith("weight_hh")
                else (3 * H,)
            )
            out.append((name, shape))
        return tuple(out)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for name, default in (
            ("bias", True),
            ("batch_first", False),
            ("dropout", 0.0),
            ("bidirectional", False),
            ("reset_after", True),
            ("compute_dtype", None),
            ("layer_norm", False),
            ("zoneout", 0.0),
            ("recurrent_dropout", 0.0),
            ("input_dropout", 0.0),
            ("weight_dropout", 0.0),
        ):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    def forward(
        self, input: Tensor | PackedSequence, hx: Tensor | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor | PackedSequence, Tensor]:  # lengths may be positional: torch.onnx.export passes every default so
        if lengths is None:
            fast = self._direct_forward(input, hx)
            if fast is not None:
                return fast
        w0 = self.weight_ih_l0
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise ValueError("lengths must not be given with a PackedSequence input: it carries its own lengths")
            _checks.check_input(input.data, self.input_size, w0, 3, "PackedSequence data (N, I)")
            x, lengths = pad_packed_sequence(input)  # (T, B, I), (B,) in the caller's order
            batched = True
        else:
            x, batched = _checks.time_major(input, self.input_size, w0, self.batch_first)  # (T, B, I)
        T, B = x.shape[0], x.shape[1]  # B may be 0: empty outputs, as torch.nn.GRU returns
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        if hx is None:
            h0 = torch.zeros(LD, B, H, dtype=x.dtype, device=x.device)
        else:
            _checks.check_hidden(hx, (LD, B, H) if batched else (LD, H), w0)
            h0 = hx if batched else hx.unsqueeze(1)  # (L*D, B, H)
        if lengths is not None:
            lengths = _checks.check_lengths(lengths, B, T, x.device)
        self._check_parameters(w0.dtype, w0.device)
        weights, norms = self._layer_weights(), self._norms()
        low = self.compute_dtype
        if low is not None and low != x.dtype:  # mixed precision: compute in `low`, return in x's dtype
            weights = [
                (
                    w_ih.to(low),
                    w_hh.to(low),
                    None if b_ih is None else b_ih.to(low),
                    None if b_hh is None else b_hh.to(low),
                )
                for w_ih, w_hh, b_ih, b_hh in weights
            ]
            norms = None if norms is None else [(a.to(low), b.to(low), c.to(low), d.to(low)) for a, b, c, d in norms]
            out, h_n = self._run(x.to(low), h0.to(low), weights, lengths, norms)
            out, h_n = out.to(x.dtype), h_n.to(x.dtype)
        else:
            out, h_n = self._run(x, h0, weights, lengths, norms)  # (T, B, D*H), (L*D, B, H)
        if isinstance(input, PackedSequence):
            return _repack(out, input), h_n
        if not batched:
            return out.squeeze(1), h_n.squeeze(1)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, h_n

    def _direct_forward(self, input: Tensor | PackedSequence, hx: Tensor | None) -> tuple[Tensor, Tensor] | None:
        """The whole stack in one native call (and, when autograd records, one more for backward),
        or None where this path does not apply (the caller then takes the checked path, which
        also names anything wrong).

        Per call it costs what a small layer's arithmetic costs: no per-layer Python, no
        dispatcher, no per-layer autograd. It runs the plain GRU, layer_norm, zoneout, recurrent
        dropout and DropConnect (in training with autograd on, their masks are drawn here, layer
        by layer in the per-layer path's order, from the same generator), the dropouts in eval,
        where they are off, and ``compute_dtype`` (the inputs, weights and state cast to it
        around the stack, as the per-layer path casts them). It never runs under tracing,
        compiling, exporting or torch.func transforms, for tensor subclasses, with input dropout
        or dropout between layers in training, or lengths."""
        if (
            type(input) is not Tensor
            or (hx is not None and type(hx) is not Tensor)
            or (self.training and (self.input_dropout or (self.dropout and self.num_layers > 1)))
            or torch.jit.is_tracing()
            or torch.compiler.is_compiling()
            or backend.transforms_active()
            or _checks.is_exporting()
        ):
            return None
        batched = input.dim() == 3
        if not (batched or input.dim() == 2) or input.numel() == 0 or self.hidden_size == 0:
            return None
        params = list(map(self._parameters.get, self._flat_weights_names))
        norms = list(map(self._parameters.get, self._norm_names))  # empty without layer_norm
        if not _PLAIN_TYPES.issuperset(map(type, params)) or (norms and not _PLAIN_TYPES.issuperset(map(type, norms))):
            return None  # (so from here on every entry of params and norms is a tensor)
        train = torch.is_grad_enabled() and (
            input.requires_grad
            or (hx is not None and hx.requires_grad)
            or any(map(_REQUIRES_GRAD, params))
            or any(map(_REQUIRES_GRAD, norms))
        )
        draws = self.training and (self.zoneout > 0 or self.recurrent_dropout > 0 or self.weight_dropout > 0)
        if draws and not train:  # (the no-grad stack takes no masks)
            return None
        stack = backend.stack_fn(input, train)
        if stack is None:
            return None
        x = input if batched else input.unsqueeze(1)  # (T, B, I)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        h0 = hx if hx is None or batched else hx.unsqueeze(1)  # (L*D, B, H)
        weights = cast("list[Tensor]", params)  # (a new list: _draw_masks may replace its entries)
        norm_params = cast("list[Tensor]", norms)
        low = self.compute_dtype
        mixed = low is not None and low != input.dtype  # compute in low, return in input's dtype
        native_casts = mixed and not train and low == torch.bfloat16  # the no-grad stack casts (compute_bf16)
        if mixed:
            if low not in _KERNEL_DTYPES or (h0 is not None and h0.dtype != input.dtype):
                return None
            if not native_casts:
                x, h0 = x.to(low), None if h0 is None else h0.to(low)
                weights = [w.to(low) for w in weights]
                norm_params = [n.to(low) for n in norm_params]
        gen = self.generator
        drawn_from = (gen.get_state() if gen is not None else torch.get_rng_state()) if draws else None
        try:
            zoneout = 0.0 if self.training else self.zoneout
            args = (
                x,
                h0,
                weights,
                self.num_layers,
                self.bidirectional,
                self.bias,
                self.reset_after,
                norm_params,
                zoneout,
            )
            if draws:
                zones, h_masks = self._draw_masks(x, weights)  # (masks weight_hh in `weights` in place)
                out, h_n = stack(*args, zones, h_masks)
            elif train:
                out, h_n = stack(*args)
            else:
                out, h_n = stack(*args, native_casts)
        except RuntimeError:  # a wrong shape, dtype or device: the checked path says which, in torch's words
            if drawn_from is not None:  # and draws the masks itself, from where these were drawn
                if gen is not None:
                    gen.set_state(drawn_from)
                else:
                    torch.set_rng_state(drawn_from)
            return None
        if mixed and not native_casts:
            out, h_n = out.to(input.dtype), h_n.to(input.dtype)
        if not batched:
            return out.squeeze(1), h_n.squeeze(1)
        return (out.transpose(0, 1) if self.batch_first else out), h_n

    def _draw_masks(self, x: Tensor, weights: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """The training masks of the one-call stack, drawn by functional.gru's own
        :func:`~grukit.functional.layer.layer_masks`, layer by layer, so that both paths draw the
        same masks from the same generator state. ``weights`` (the flat list) gets its weight_hh
        entries multiplied by DropConnect's masks (differentiably); returns zoneout's masks
        (D, T, B, H) and recurrent dropout's (D, B, H), one per layer, or empty lists."""
        D, per = self.num_directions, 4 if self.bias else 2
        zones: list[Tensor] = []
        h_masks: list[Tensor] = []
        for layer in range(self.num_layers):
            rows = [(layer * D + d) * per + 1 for d in range(D)]  # weight_hh of each direction
            _, w_masks, h_mask, keep = layer_masks(
                x,  # (no input dropout here: the caller ruled it out)
                x,
                [weights[k] for k in rows],
                hidden_size=self.hidden_size,
                weight_dropout=self.weight_dropout,
                recurrent_dropout=self.recurrent_dropout,
                zoneout=self.zoneout,
                generator=self.generator,
            )
            for k, m in zip(rows, w_masks):
                if m is not None:
                    weights[k] = weights[k] * m
            if h_mask is not None:
                h_masks.append(h_mask)
            if keep is not None:
                zones.append(keep)
        return zones, h_masks

    def _run(self, x: Tensor, h0: Tensor, weights, lengths: Tensor | None, norms=None) -> tuple[Tensor, Tensor]:
        """The stack on checked tensors: x (T, B, I), h0 (L*D, B, H) -> (T, B, D*H), (L*D, B, H)."""
        if _checks.onnx_exporting():  # one ONNX GRU node per layer under either exporter (see grukit.onnx_export)
            from . import onnx_export

            return onnx_export.gru_stack(self, x, h0, weights, lengths)
        return functional.gru(
            x,
            h0,
            weights,
            num_layers=self.num_layers,
            bidirectional=self.bidirectional,
            reset_after=self.reset_after,
            dropout=self.dropout,
            training=self.training,
            lengths=lengths,
            norms=norms,
            zoneout=self.zoneout,
            recurrent_dropout=self.recurrent_dropout,
            input_dropout=self.input_dropout,
            weight_dropout=self.weight_dropout,
            generator=self.generator,
            layer_fn=backend.layer_fn(x, h0, weights[0][0]),
        )

    @classmethod
    def from_torch(cls, module: nn.GRU) -> GRU:
        """An exact copy of a torch.nn.GRU (same device, dtype and weights)."""
        from .interchange import gru_from_torch

        return gru_from_torch(cls, module)

    def to_torch(self) -> nn.GRU:
        """An exact torch.nn.GRU copy (only ``reset_after=True`` has one)."""
        from .interchange import gru_to_torch

        return gru_to_torch(self)

    @classmethod
    def from_keras(cls, weights, **kwargs) -> GRU:
        """Build from a Keras GRU's (or Bidirectional(GRU)'s) ``get_weights()``."""
        from .interchange import gru_from_keras

        return gru_from_keras(cls, weights, **kwargs)

    def keras_weights(self) -> list:
        """NumPy arrays in the order a Keras GRU's ``set_weights`` expects."""
        from .interchange import gru_keras_weights

        return gru_keras_weights(self)


_PLAIN_TYPES = frozenset((Tensor, nn.Parameter))  # not a tensor subclass (ExpandedWeight, fake or functional tensors)
_REQUIRES_GRAD = operator.attrgetter("requires_grad")


def _repack(out: Tensor, like: PackedSequence) -> PackedSequence:
    """Pack a padded output (T, B, D*H), in the caller's order, as ``like``."""
    _, lengths = pad_packed_sequence(like)
    order = like.sorted_indices
    if order is not None:
        out, lengths = out.index_select(1, order), lengths[order.cpu()]
    data = pack_padded_sequence(out, lengths, enforce_sorted=True).data
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)
