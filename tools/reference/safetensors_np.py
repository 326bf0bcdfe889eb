"""Minimal safetensors reader/writer on numpy, for the fixture tools (Debian has no `safetensors`).

Arrays are kept as numpy float32 in memory; BF16 is stored as the upper 16 bits of float32 with
round-to-nearest-even, F16 with numpy's float16. Writing streams tensor by tensor so that
checkpoints larger than memory (the zaya1-8b shape) can be produced.
"""

import json
import os
import struct

import numpy as np

DTYPE_SIZE = {"F32": 4, "F16": 2, "BF16": 2}


def f32_to_bf16_bits(a):
    """float32 array -> uint16 bf16 bits, round to nearest even (NaN kept quiet).

    Works in chunks with uint32 arithmetic (no overflow: only NaN bit patterns could carry past
    32 bits, and those are handled separately) so that multi-GB tensors stay cheap.
    """
    a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    out = np.empty(a.shape, dtype=np.uint16)
    chunk = 1 << 24
    for start in range(0, a.size, chunk):
        part = a[start:start + chunk]
        bits = part.view(np.uint32)
        rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
        res = rounded.astype(np.uint16)
        nan = np.isnan(part)
        if nan.any():
            res[nan] = ((bits[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
        out[start:start + chunk] = res
    return out


def bf16_bits_to_f32(b):
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_to_dtype(a, dtype):
    """The float32 values an array takes after a round trip through `dtype`."""
    if dtype == "F32":
        return np.asarray(a, dtype=np.float32)
    if dtype == "F16":
        return np.asarray(a, dtype=np.float16).astype(np.float32)
    return bf16_bits_to_f32(f32_to_bf16_bits(a))


def encode(a, dtype):
    if dtype == "F32":
        return np.ascontiguousarray(a, dtype="<f4").tobytes()
    if dtype == "F16":
        return np.ascontiguousarray(a, dtype="<f2").tobytes()
    if dtype == "BF16":
        return f32_to_bf16_bits(a).astype("<u2").tobytes()
    raise ValueError(f"unsupported dtype {dtype}")


def write(path, specs, produce, metadata=None):
    """Writes a safetensors file.

    specs: list of (name, dtype, shape) in file order.
    produce(name) -> float32 numpy array of that shape (called once per tensor, in order).
    """
    header = {}
    offset = 0
    for name, dtype, shape in specs:
        n = DTYPE_SIZE[dtype] * int(np.prod(shape, dtype=np.int64))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * ((8 - len(blob) % 8) % 8)  # keep the data section 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, dtype, shape in specs:
            a = produce(name)
            assert tuple(a.shape) == tuple(shape), (name, a.shape, shape)
            f.write(encode(a, dtype))


def read(path):
    """Returns {name: (dtype, float32 array)}."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = memoryview(raw)[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = data[b:e]
        shape = tuple(info["shape"])
        dt = info["dtype"]
        if dt == "F32":
            a = np.frombuffer(buf, dtype="<f4").astype(np.float32)
        elif dt == "F16":
            a = np.frombuffer(buf, dtype="<f2").astype(np.float32)
        elif dt == "BF16":
            a = bf16_bits_to_f32(np.frombuffer(buf, dtype="<u2"))
        else:
            raise ValueError(f"{path}: {name}: unsupported dtype {dt}")
        out[name] = (dt, a.reshape(shape))
    return out


def read_checkpoint_tensors(directory):
    """All tensors of a checkpoint folder (single file or index + shards)."""
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for name in files:
        for k, v in read(os.path.join(directory, name)).items():
            if k in out:
                raise ValueError(f"tensor {k} appears in two shards")
            out[k] = v
    return out
