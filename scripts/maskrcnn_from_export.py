#!/usr/bin/env python3
"""Load a backbone exported by `usctl export` into torchvision's Mask R-CNN (ResNet-18 FPN).

    .venv/bin/python scripts/maskrcnn_from_export.py backbone.safetensors [--classes 2]

Builds `resnet_fpn_backbone("resnet18")` (frozen batch norm, as torchvision's detection models
use), loads the exported tensors into its `body` (the ResNet-18 without avgpool and fc: exactly
the exported names), wraps it in `MaskRCNN` with `--classes` classes (background included: 2 for
one lesion class), runs it once on a blank image and prints a JSON summary: the keys that did not
load, and the first conv weight's largest difference from the file. The FPN, RPN and heads start
from torchvision's initialisation; train them with torchvision's detection references.
Needs torch and torchvision only (the file is read without the safetensors package).
"""
import argparse
import json
import struct

import torch
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

DTYPES = {"F32": torch.float32, "F16": torch.float16, "I64": torch.int64}


def load_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    out = {}
    for name, v in json.loads(data[8:8 + n]).items():
        if name == "__metadata__":
            continue
        a, e = v["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[8 + n + a:8 + n + e]), dtype=DTYPES[v["dtype"]]).reshape(v["shape"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("backbone", help="a .safetensors written by `usctl export`")
    ap.add_argument("--classes", type=int, default=2, help="classes including background (default 2)")
    args = ap.parse_args()
    state = load_safetensors(args.backbone)
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5)
    result = backbone.body.load_state_dict(state, strict=False)
    model = MaskRCNN(backbone, num_classes=args.classes)
    model.eval()
    with torch.no_grad():
        out = model([torch.zeros(3, 128, 128)])[0]
    diff = (backbone.body.conv1.weight - state["conv1.weight"]).abs().max().item()
    print(json.dumps({
        "missing": sorted(result.missing_keys),
        "unexpected": sorted(result.unexpected_keys),
        "conv1_max_abs_diff": diff,
        "outputs": sorted(out.keys()),
        "parameters": sum(p.numel() for p in model.parameters()),
    }))


if __name__ == "__main__":
    main()
