"""pycocotools' COCOeval on the cases tests/coco_ap.rs writes; prints one JSON list of stats per case.

Usage: coco_reference.py CASES.json
CASES.json is a list of {"iou_type": "bbox"|"segm", "gt": COCO ground-truth dict, "dt": result list}.
Masks come as uncompressed RLE ({"size": [h, w], "counts": [...]}, column-major as COCO's);
ground truth is read that way by COCO.annToRLE, detections are compressed here first because
COCO.loadRes only takes compressed RLE results.
"""
import contextlib
import json
import sys

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval


def run(case):
    gt = COCO()
    gt.dataset = case["gt"]
    gt.createIndex()
    dts = case["dt"]
    if case["iou_type"] == "segm":
        for d in dts:
            h, w = d["segmentation"]["size"]
            d["segmentation"] = mask_utils.frPyObjects(d["segmentation"], h, w)
    dt = gt.loadRes(dts)
    ev = COCOeval(gt, dt, case["iou_type"])
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return [float(s) for s in ev.stats]


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    out = []
    # pycocotools prints progress and the summary table; keep stdout for the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        for case in cases:
            out.append(run(case))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
