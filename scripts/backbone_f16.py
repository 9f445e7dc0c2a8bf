#!/usr/bin/env python3
"""Rewrite a safetensors file (a `usctl export` backbone) with its float tensors as float16.

    python3 scripts/backbone_f16.py spg.safetensors spg.f16.safetensors

For carrying backbones off a machine whose transfers are small (docs/GPU.md, "Standing
checklist"): a ResNet-18 backbone is 44.7 MB in float32 and half that in float16. Integer tensors
(num_batches_tracked) and the header's metadata are kept. `usctl eval --init` reads float16
(src/torch/checkpoint.rs converts it to float32 on load). Needs torch only: the file is read and
written without the safetensors package.
"""
import ctypes
import json
import struct
import sys

import torch

FLOATS = {"F32": torch.float32, "F64": torch.float64, "BF16": torch.bfloat16, "F16": torch.float16}


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: backbone_f16.py IN.safetensors OUT.safetensors")
    src, dst = sys.argv[1], sys.argv[2]
    data = open(src, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out_header, chunks, offset = {}, [], 0
    for name, v in header.items():
        if name == "__metadata__":
            out_header[name] = v
            continue
        a, e = v["data_offsets"]
        raw = body[a:e]
        dtype = v["dtype"]
        if dtype in FLOATS:
            t = torch.frombuffer(bytearray(raw), dtype=FLOATS[dtype]) if raw else torch.empty(0, dtype=FLOATS[dtype])
            h = t.to(torch.float16).contiguous()
            raw = ctypes.string_at(h.data_ptr(), h.numel() * h.element_size())  # without numpy
            dtype = "F16"
        out_header[name] = {"dtype": dtype, "shape": v["shape"], "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(out_header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the safetensors convention: the data starts 8-byte aligned
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)
    print(f"{dst}: {8 + len(text) + offset} bytes (from {len(data)})")


if __name__ == "__main__":
    main()
