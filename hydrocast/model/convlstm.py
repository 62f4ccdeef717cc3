"""The recurrent core: a convolutional LSTM that runs over the whole domain.

Gate layout
-----------
One fused convolution over ``concat([x, h])`` gives ``4 * hidden`` channels, ordered
``(i, f, o, g)``: the three sigmoid gates first, so a single ``sigmoid`` call covers them, then the
cell candidate ``g`` (``tanh``). The update is the standard one::

    c' = f * c + i * g
    h' = o * tanh(c')

The forget-gate bias starts at 1 (Gers et al. 2000; NeuralHydrology's ``initial_forget_bias``),
so the cell remembers by default at the start of training: catchments have long memory.

Speed (CPU, eager)
------------------
A training step is ~85 % convolution (oneDNN, near the machine's matmul peak), so the savings
are in what surrounds it (measured by ``benchmarks/train.py`` against a textbook ConvLSTM):

* the sequence is ``unbind``-ed once and per-step tensors stay in lists. Indexing ``x[:, t]`` on
  a stacked (B, T, ...) tensor, as textbook ConvLSTMs do between layers, costs O(T^2): each
  index's backward allocates and zero-fills a gradient the size of the whole sequence;
* the first step from a zero state convolves only the input part of the fused kernel
  (``W_h @ 0 == 0``): no convolution spent on zeros, no zero tensors allocated;
* one ``sigmoid`` for the three gates, ``addcmul`` for the cell update, ``split``/``chunk``
  instead of slices (a slice's backward also zero-fills a full-size gradient).

Tried and rejected on a 2-core CPU: ``channels_last`` (faster forward convolution, slower
backward and gate arithmetic: slower overall); convolving the inputs of all days at once (the
big backward convolution is slower than ``T`` small ones in oneDNN); ``torch.compile`` of the
gate arithmetic (no measurable gain, ~15 s compile). Dtypes are never
hard-coded, so ``torch.autocast`` (bf16 on a GPU) applies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

State = tuple[torch.Tensor, torch.Tensor]


def lstm_gates(z: torch.Tensor, c: torch.Tensor | None) -> State:
    """The LSTM update from fused pre-activations ``z`` (B, 4*hidden, H, W) ordered (i, f, o, g).

    ``c=None`` means a zero cell state (then ``c' = i * g``). Under mixed precision (``z`` in
    bf16/fp16) the cell state is kept in float32, since it accumulates over the whole window,
    and ``h`` is returned in ``z``'s dtype; in float32 nothing is converted."""
    hidden = z.shape[1] // 4
    # split/chunk rather than slicing: their backward is one cat, where each slice's backward
    # would allocate and zero-fill a full-size gradient.
    z_ifo, z_g = z.split([3 * hidden, hidden], dim=1)
    i, f, o = torch.sigmoid(z_ifo).chunk(3, dim=1)
    g = torch.tanh(z_g)
    ig = i * g
    if c is None:
        c_new = ig.float() if ig.dtype in (torch.bfloat16, torch.float16) else ig
    elif c.dtype == ig.dtype:
        c_new = torch.addcmul(ig, f, c)
    else:
        c_new = f * c + ig  # promotes to the (float32) cell-state dtype
    h_new = (o * torch.tanh(c_new)).to(z.dtype)
    return h_new, c_new


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer, one time step.

    Parameters
    ----------
    in_ch : int
        Input channels.
    hidden : int
        Hidden (and cell) channels.
    kernel : int
        Odd kernel size of the fused convolution; "same" zero padding keeps H, W.
    """

    def __init__(self, in_ch: int, hidden: int, kernel: int = 3):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"kernel must be odd (same padding), got {kernel}")
        self.in_ch, self.hidden, self.kernel = int(in_ch), int(hidden), int(kernel)
        self.padding = kernel // 2
        self.conv = nn.Conv2d(in_ch + hidden, 4 * hidden, kernel, padding=self.padding)
        with torch.no_grad():
            self.conv.bias[hidden:2 * hidden].fill_(1.0)  # forget gate

    @property
    def input_weight(self) -> torch.Tensor:
        """The part of the fused kernel that sees ``x`` (4*hidden, in_ch, k, k); a view."""
        return self.conv.weight[:, :self.in_ch]

    @property
    def hidden_weight(self) -> torch.Tensor:
        """The part of the fused kernel that sees ``h`` (4*hidden, hidden, k, k); a view."""
        return self.conv.weight[:, self.in_ch:]

    def forward(self, x: torch.Tensor, state: State | None = None) -> State:
        """One step: ``x`` (B, in_ch, H, W), ``state`` (h, c) each (B, hidden, H, W) or None
        for zeros. Returns the new ``(h, c)``."""
        if state is None:
            # W @ [x, 0] == W_x @ x: skip the convolution of the zero hidden state.
            z = F.conv2d(x, self.input_weight, self.conv.bias, padding=self.padding)
            return lstm_gates(z, None)
        h, c = state
        z = self.conv(torch.cat([x, h], dim=1))
        return lstm_gates(z, c)


class ConvLSTM(nn.Module):
    """Stacked ConvLSTM cells over a sequence.

    Parameters
    ----------
    in_ch, hidden, kernel : int
        As for :class:`ConvLSTMCell`; layers above the first take ``hidden`` input channels.
    depth : int
        Number of stacked layers.

    ``forward(x, state=None)`` takes ``x`` (B, T, in_ch, H, W) and optionally the initial state,
    a list of ``depth`` pairs ``(h, c)`` each (B, hidden, H, W) (``None`` = zeros), e.g. the
    final state of the previous chunk for a stateful run. It returns
    ``(out, final_state)``: ``out`` (B, T, hidden, H, W) are the top layer's hidden maps at every
    step and ``final_state`` is the list of ``(h, c)`` after the last step, per layer.

    ``channels_last`` (attribute, default False): run the convolutions on NHWC tensors, the
    layout cuDNN's tensor-core kernels want (use it on a GPU; on a 2-core CPU it was slower).
    """

    def __init__(self, in_ch: int, hidden: int, kernel: int = 3, depth: int = 1):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.in_ch, self.hidden, self.kernel, self.depth = int(in_ch), int(hidden), int(kernel), int(depth)
        self.cells = nn.ModuleList(
            ConvLSTMCell(in_ch if layer == 0 else hidden, hidden, kernel) for layer in range(depth))
        self.channels_last = False

    def forward(self, x: torch.Tensor, state: list[State | None] | None = None, keep_states: bool = False
                ) -> tuple[torch.Tensor, list]:
        """``keep_states=True``: ``final_state`` is instead, per layer, the pair ``(h_seq, c_seq)`` of
        the states after EVERY step, each (B, T, hidden, H, W): what a forecast rollout from each
        day starts from (see :class:`hydrocast.model.HydroConvLSTM`)."""
        if x.ndim != 5 or x.shape[2] != self.in_ch:
            raise ValueError(f"expected x of shape (B, T, {self.in_ch}, H, W), got {tuple(x.shape)}")
        if state is not None and len(state) != self.depth:
            raise ValueError(f"expected {self.depth} initial states, got {len(state)}")
        steps = list(x.unbind(dim=1))
        if self.channels_last:
            steps = [s.contiguous(memory_format=torch.channels_last) for s in steps]
        final: list = []
        for layer, cell in enumerate(self.cells):
            layer_state = None if state is None else state[layer]
            cells = []
            for t, x_t in enumerate(steps):
                layer_state = cell(x_t, layer_state)
                steps[t] = layer_state[0]
                if keep_states:
                    cells.append(layer_state[1])
            final.append((torch.stack(steps, dim=1), torch.stack(cells, dim=1)) if keep_states else layer_state)
        return torch.stack(steps, dim=1), final
