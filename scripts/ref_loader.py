"""Benchmark contender: a per-sample PIL + torchvision pair pipeline in the style of the USCL
reference code (JPEG frames on disk, three frames per video, PIL blending, torchvision transforms
per image, one process). Written for `make bench`; prints pairs per second as JSON.

usage: ref_loader.py FRAMES_DIR SIZE PAIRS
FRAMES_DIR holds one folder of JPEG frames per video (what `ffmpeg -vf fps=3` wrote).
"""
import json, os, random, sys, time

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

root, size, pairs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
rng = random.Random(0)
videos = []
for d in sorted(os.listdir(root)):
    frames = sorted(os.path.join(root, d, f) for f in os.listdir(os.path.join(root, d)) if f.endswith(".jpg"))
    if len(frames) >= 3:
        videos.append(frames)
aug = transforms.Compose([
    transforms.RandomResizedCrop(size, scale=(0.8, 1.0), ratio=(0.8, 1.25)),
    transforms.RandomHorizontalFlip(),
    transforms.RandomApply([transforms.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
    transforms.ToTensor(),
    transforms.Normalize([0.5] * 3, [0.25] * 3),
])

def pair():
    frames = rng.choice(videos)
    i, j, k = sorted(rng.sample(range(len(frames)), 3))
    f1, f2, f3 = (Image.open(frames[x]).convert("RGB") for x in (i, j, k))
    x1, x2 = np.random.beta(0.5, 0.5, 2)
    return aug(Image.blend(f1, f2, float(x1))), aug(Image.blend(f3, f2, float(x2)))

for _ in range(4):  # warm-up
    pair()
t0 = time.perf_counter()
for _ in range(pairs):
    pair()
seconds = time.perf_counter() - t0
print(json.dumps({"what": "reference-style PIL pairs", "threads": 1, "image_size": size, "items": pairs, "seconds": seconds, "per_second": pairs / seconds}))
