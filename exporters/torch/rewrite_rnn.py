"""nn.LSTM and nn.GRU unrolled over time into matmuls and pointwise ops that onnx2tf converts.

onnx2tf 1.29 cannot convert the ONNX LSTM/GRU ops that torch.onnx writes for these layers.
The sequence length is static at export time, so a Python loop over the time steps traces
to a fixed graph of FULLY_CONNECTED, SPLIT, LOGISTIC, TANH, MUL, ADD, RESHAPE and
CONCATENATION, all TFLite builtins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

# One step's recurrent state: LSTM carries (h, c), GRU carries h alone; None is a zero state.
State = tuple[Tensor | None, ...]
# One (layer, direction)'s Parameters by role: w_ih, w_hh, b_ih, b_hh, w_hr (None if absent).
Weights = dict[str, Tensor | None]


class UnrolledRNN(nn.Module):
    """Shared unrolling of a multi-layer, optionally bidirectional recurrent layer.

    The module holds the original layer's Parameters under their original names, so its
    state_dict is the original's. Each (layer, direction) projects the whole input sequence
    with one matmul up front; only the recurrent matmul and the gate arithmetic run per step.
    """

    def __init__(self, rnn: nn.RNNBase) -> None:
        super().__init__()
        self.training = rnn.training
        self.input_size, self.hidden_size = rnn.input_size, rnn.hidden_size
        self.num_layers, self.bias = rnn.num_layers, rnn.bias
        self.batch_first, self.dropout = rnn.batch_first, float(rnn.dropout)
        self.bidirectional, self.proj_size = rnn.bidirectional, rnn.proj_size
        for name, param in rnn.named_parameters(recurse=False):
            self.register_parameter(name, param)

    @property
    def directions(self) -> int:
        """1, or 2 for a bidirectional layer."""
        return 2 if self.bidirectional else 1

    def weights(self, layer: int, direction: int) -> Weights:
        """This (layer, direction)'s Parameters by role."""
        suffix = f"_l{layer}{'_reverse' if direction else ''}"
        roles = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh", "w_hr": "weight_hr"}
        return {role: getattr(self, name + suffix, None) for role, name in roles.items()}

    def project_inputs(self, x: Tensor, w: Weights) -> Tensor:
        """Input-to-gate projection of every time step at once."""
        return F.linear(x, w["w_ih"], w["b_ih"])

    def step(self, gates_x: Tensor, state: State, w: Weights) -> State:
        """One time step of one direction; the state's first element is the output h."""
        raise NotImplementedError

    def split_initial(self, hx) -> list[State]:
        """Per (layer, direction) initial states from forward()'s hx (None means zeros)."""
        raise NotImplementedError

    def pack_final(self, finals: list[State]) -> Tensor | tuple[Tensor, ...]:
        """Final states stacked as the original returns them: (layers * directions, N, H)."""
        raise NotImplementedError

    def forward(self, input: Tensor, hx=None):
        """Same inputs and outputs as the replaced nn.LSTM / nn.GRU (packed sequences excepted)."""
        if isinstance(input, PackedSequence):
            raise NotImplementedError(f"{type(self).__name__} takes padded tensors, not PackedSequence")
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(self._batch_dim)
        if not batched and hx is not None:
            hx = tuple(h.unsqueeze(1) for h in hx) if isinstance(hx, tuple) else hx.unsqueeze(1)
        time_dim = 1 - self._batch_dim
        initial = self.split_initial(hx)
        finals = []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                w = self.weights(layer, direction)
                steps, final = self._run_direction(
                    x, time_dim, initial[layer * self.directions + direction], w, reverse=bool(direction)
                )
                outputs.append(steps)
                finals.append(final)
            x = _assemble(outputs, time_dim)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        states = self.pack_final(finals)
        if not batched:
            x = x.squeeze(self._batch_dim)
            states = tuple(s.squeeze(1) for s in states) if isinstance(states, tuple) else states.squeeze(1)
        return x, states

    @property
    def _batch_dim(self) -> int:
        return 0 if self.batch_first else 1

    def _run_direction(
        self, x: Tensor, time_dim: int, state: State, w: Weights, reverse: bool
    ) -> tuple[list[Tensor], State]:
        """Outputs of every step in time order, and the state after the last step taken."""
        gates = _split_steps(self.project_inputs(x, w), time_dim)
        outputs = []
        for gates_x in reversed(gates) if reverse else gates:
            state = self.step(gates_x, state, w)
            outputs.append(state[0])
        return outputs[::-1] if reverse else outputs, state


# onnx2tf tracks a channels-last permutation for every 3-D tensor and loses it through
# per-step Squeeze/Unsqueeze chains (a time-major batch-1 output came back as (1, T, H)),
# so steps are cut and joined in 2-D: one Reshape plus one Split or Concat per sequence.


def _split_steps(seq: Tensor, time_dim: int) -> list[Tensor]:
    """A (T, N, F) or (N, T, F) sequence as T tensors of shape (N, F)."""
    steps, batch, features = seq.shape[time_dim], seq.shape[1 - time_dim], seq.shape[2]
    if time_dim == 0:
        return list(seq.reshape(steps * batch, features).split(batch, dim=0))
    return list(seq.reshape(batch, steps * features).split(features, dim=1))


def _assemble(directions: list[list[Tensor]], time_dim: int) -> Tensor:
    """Per-direction lists of (N, H) step outputs as one (T, N, D*H) or (N, T, D*H) sequence."""
    steps, (batch, hidden) = len(directions[0]), directions[0][0].shape
    width = hidden * len(directions)
    if time_dim == 0:
        columns = [torch.cat(d, dim=0) for d in directions]
        flat = columns[0] if len(columns) == 1 else torch.cat(columns, dim=1)
        return flat.reshape(steps, batch, width)
    flat = torch.cat([d[t] for t in range(steps) for d in directions], dim=1)
    return flat.reshape(batch, steps, width)


def _unstack(states: Tensor) -> list[Tensor]:
    """(K, N, H) initial states as K tensors of shape (N, H)."""
    count, batch, hidden = states.shape
    return list(states.reshape(count * batch, hidden).split(batch, dim=0))


def _stack(states: list[Tensor]) -> Tensor:
    """K tensors of shape (N, H) as one (K, N, H) tensor."""
    batch, hidden = states[0].shape
    return torch.cat(states, dim=0).reshape(len(states), batch, hidden)


class UnrolledLSTM(UnrolledRNN):
    """nn.LSTM as explicit gate arithmetic, PyTorch's gate order (i, f, g, o), proj_size included."""

    def project_inputs(self, x: Tensor, w: Weights) -> Tensor:
        """Both biases go into the one up-front projection, so no step adds a bias."""
        bias = w["b_ih"] + w["b_hh"] if self.bias else None
        return F.linear(x, w["w_ih"], bias)

    def step(self, gates_x: Tensor, state: State, w: Weights) -> State:
        """c' = f*c + i*g, h' = o*tanh(c') (projected by w_hr when proj_size > 0)."""
        h, c = state
        gates = gates_x if h is None else gates_x + F.linear(h, w["w_hh"])
        i, f, g, o = gates.chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = i * g if c is None else f * c + i * g
        h = o * torch.tanh(c)
        if w["w_hr"] is not None:
            h = F.linear(h, w["w_hr"])
        return h, c

    def split_initial(self, hx) -> list[State]:
        """(h_0, c_0) each of shape (layers * directions, N, *)."""
        count = self.num_layers * self.directions
        if hx is None:
            return [(None, None)] * count
        return list(zip(_unstack(hx[0]), _unstack(hx[1])))

    def pack_final(self, finals: list[State]) -> tuple[Tensor, Tensor]:
        """(h_n, c_n)."""
        return _stack([f[0] for f in finals]), _stack([f[1] for f in finals])


class UnrolledGRU(UnrolledRNN):
    """nn.GRU as explicit gate arithmetic, PyTorch's gate order (r, z, n), b_hn inside r * (.)."""

    def step(self, gates_x: Tensor, state: State, w: Weights) -> State:
        """n = tanh(x_n + r * (W_hn h + b_hn)), h' = n + z * (h - n)."""
        (h,) = state
        hidden = self.hidden_size
        x_rz, x_n = gates_x.split([2 * hidden, hidden], dim=-1)
        if h is not None:
            recurrent = F.linear(h, w["w_hh"], w["b_hh"]).split([2 * hidden, hidden], dim=-1)
        elif w["b_hh"] is not None:  # a zero state contributes only the recurrent bias
            # Sliced, not split: onnx2tf 1.29 permutes a 1-D constant fed to Split as if it
            # were a shape vector (element 1 moves to the end), corrupting the bias.
            recurrent = w["b_hh"][: 2 * hidden], w["b_hh"][2 * hidden :]
        else:
            recurrent = None
        if recurrent is not None:
            x_rz = x_rz + recurrent[0]  # the n part (W_hn h + b_hn) joins only after the reset gate
        r, z = torch.sigmoid(x_rz).chunk(2, dim=-1)
        n = torch.tanh(x_n if recurrent is None else x_n + r * recurrent[1])
        return (n - z * n,) if h is None else (n + z * (h - n),)

    def split_initial(self, hx) -> list[State]:
        """h_0 of shape (layers * directions, N, H)."""
        count = self.num_layers * self.directions
        return [(None,)] * count if hx is None else [(h,) for h in _unstack(hx)]

    def pack_final(self, finals: list[State]) -> Tensor:
        """h_n."""
        return _stack([f[0] for f in finals])
