#!/usr/bin/env python3
"""The distribution tables of `usctl audit` (src/audit/distributions.rs, docs/AUDIT.md), as Python
polars queries over one store version's videos.parquet (docs/store-format.md), for curators who
want to repeat, filter or extend them. Prints the tables as JSON, with the field names and row
order of report.json's distributions; tests/audit_distributions.rs checks that the numbers are the
same as usctl's.

    .venv/bin/python scripts/distributions.py STORE/DATASET/0001-<id>      (or .../videos.parquet)

Needs polars in the project's .venv (`make setup` installs it).
"""
import json
import sys
from pathlib import Path

import polars as pl


def tables(path):
    # One literal file: no globbing of `*`/`[` in folder names.
    v = pl.scan_parquet(path, glob=False)
    keys = ["subdataset", "class_name"]

    def summary(c):
        return [pl.len().alias("n"), pl.col(c).min().alias("min"), pl.col(c).median().alias("median"),
                pl.col(c).mean().alias("mean"), pl.col(c).max().alias("max")]

    stored = pl.col("frames_kept") > 0
    timed = (pl.col("kind") == "video") & pl.col("duration_s").is_not_null()
    out = {"videos_parquet": str(path)}
    # Every row, by sub-dataset and class (classless last).
    out["per_class"] = (v.group_by(keys).agg(pl.len().alias("videos"), stored.sum().alias("stored"), pl.col("frames_kept").sum().alias("frames"))
                        .sort(keys, nulls_last=True))
    # frames_kept of the rows with at least one stored frame.
    out["frames_per_video"] = v.filter(stored).group_by(keys).agg(summary("frames_kept")).sort(keys, nulls_last=True)
    # duration_s of the rows of kind video whose duration is known.
    out["durations_s"] = v.filter(timed).group_by(keys).agg(summary("duration_s")).sort(keys, nulls_last=True)
    # Rows whose width and height are known (images included), most frequent first.
    out["resolutions"] = (v.filter(pl.col("width").is_not_null() & pl.col("height").is_not_null())
                          .group_by("width", "height").agg(pl.len().alias("videos"))
                          .sort(["videos", "width", "height"], descending=[True, False, False]))
    # Rows whose native_fps is known (images have none), by rate rounded half up.
    out["frame_rates"] = (v.filter(pl.col("native_fps").is_not_null())
                          .group_by((pl.col("native_fps") + 0.5).cast(pl.Int64).alias("fps")).agg(pl.len().alias("videos"))
                          .sort("fps"))
    # Every row, by sub-dataset and status.
    out["statuses"] = v.group_by("subdataset", "status").agg(pl.len().alias("videos")).sort("subdataset", "status")
    return {k: (t.collect().to_dicts() if isinstance(t, pl.LazyFrame) else t) for k, t in out.items()}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: scripts/distributions.py VERSION_DIR|videos.parquet")
    path = Path(sys.argv[1])
    if path.is_dir():
        path = path / "videos.parquet"
    print(json.dumps(tables(path), indent=1))


if __name__ == "__main__":
    main()
