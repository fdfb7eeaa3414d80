"""Compare the reference dumps written by dump_reference_items.py with each other.

numpy only; run it with either peer venv's python (or any python with numpy):

    /tmp/peers/venv/bin/python benchmarks/peers/compare_references.py /tmp/peer_data/dumps \
        --data /tmp/peer_data --json /tmp/peer_data/compare_summary.json

Dump names are ``<dataset>__<lib>-<backend>__<query>__<episodes>.npz``. Reports:

* for every (dataset, query, episodes) read by several readers: key lists, dtypes, shapes, exact equality of
  every non-camera value, and max / mean absolute pixel difference of every camera value (float [0, 1]);
* lr_X vs ot_X (same synthetic content written by the two writers): the same, on the positions both read;
* for every dump with a camera: whether each returned frame is the right one (identity pixels), and the
  codec error (mean absolute difference to the frame that was written);
* OpenTau speed labels: the meta/speed_percentiles.jsonl it left, its per-episode labels, and an independent
  recomputation from meta/episodes (percentiles of the lengths per task over the whole dataset);
* reference errors, item counts, and HF cache growth.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from identity_pixels import decode_identity, identity_error  # noqa: E402

SPEED_PCTS = (5, 15, 25, 35, 45, 55, 65, 75, 85, 95)
SPEED_LABELS = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


def load(path: str) -> dict:
    z = np.load(path, allow_pickle=False)
    d = {k: z[k] for k in z.files}
    d["_info"] = json.loads(str(d["info"]))
    name = Path(path).stem
    ds, reader, query, eps = name.split("__")
    d["_name"], d["_dataset"], d["_reader"], d["_query"], d["_eps"] = name, ds, reader, query, eps
    return d


def is_camera(key: str) -> bool:
    return key.startswith("observation.images.") and not key.endswith("_is_pad")


def ok_index_map(d: dict) -> dict[int, int]:
    """dataset position -> row in the stacked item arrays."""
    pos = d["indices"][d["ok"]]
    return {int(p): r for r, p in enumerate(pos)}


def compare_pair(a: dict, b: dict, positions_key: str = "indices") -> dict:
    ma, mb = ok_index_map(a), ok_index_map(b)
    common = sorted(set(ma) & set(mb))
    ra = np.array([ma[p] for p in common], dtype=np.int64)
    rb = np.array([mb[p] for p in common], dtype=np.int64)
    ka, kb = [str(k) for k in a["keys"]], [str(k) for k in b["keys"]]
    res = {
        "a": a["_name"],
        "b": b["_name"],
        "common_items": len(common),
        "keys_equal": ka == kb,
        "key_order_equal": ka == kb,
        "only_a": sorted(set(ka) - set(kb)),
        "only_b": sorted(set(kb) - set(ka)),
        "values": {},
    }
    if set(ka) == set(kb) and ka != kb:
        res["keys_equal"] = True
    for k in ka:
        if k not in kb:
            continue
        va, vb = a[f"item/{k}"][ra], b[f"item/{k}"][rb]
        ent = {
            "dtype_a": str(a[f"dtype/{k}"]),
            "dtype_b": str(b[f"dtype/{k}"]),
            "shape_a": a[f"shape/{k}"].tolist(),
            "shape_b": b[f"shape/{k}"].tolist(),
        }
        if va.shape != vb.shape:
            ent["equal"] = False
            ent["note"] = "shape differs"
        elif is_camera(k):
            diff = np.abs(va.astype(np.float64) - vb.astype(np.float64))
            per_item = diff.reshape(len(diff), -1).max(axis=1) if len(diff) else np.zeros(0)
            ent.update(
                max_abs=float(diff.max()) if diff.size else 0.0,
                mean_abs=float(diff.mean()) if diff.size else 0.0,
                p999_abs=float(np.quantile(diff, 0.999)) if diff.size else 0.0,
                frac_pixels_differ=float((diff > 0).mean()) if diff.size else 0.0,
                items_not_identical=int((per_item > 0).sum()),
                equal=bool(diff.size == 0 or diff.max() == 0),
            )
        elif va.dtype.kind in "US":
            ent["equal"] = bool(np.array_equal(va, vb))
        else:
            eq = np.array_equal(va, vb) and va.dtype == vb.dtype
            ent["equal"] = bool(eq)
            if not eq:
                neq = (
                    (va != vb).reshape(len(va), -1).any(axis=1)
                    if va.dtype.kind != "f"
                    else ~np.isclose(va, vb, rtol=0, atol=0, equal_nan=True).reshape(len(va), -1).all(axis=1)
                )
                ent["items_differ"] = int(neq.sum())
                ent["first_positions_differ"] = [common[i] for i in np.flatnonzero(neq)[:10].tolist()]
                if va.dtype != vb.dtype:
                    ent["note"] = f"numpy dtypes {va.dtype} vs {vb.dtype}"
        res["values"][k] = ent
    return res


def camera_deltas(d: dict, key: str) -> list[int] | None:
    dt = d["_info"].get("delta_timestamps") or {}
    if key in dt:
        return [round(x * d["_info"]["fps"]) for x in dt[key]]
    return None


def identity_check(d: dict, lengths: dict[int, int]) -> dict:
    out = {}
    ep = d["item/episode_index"] if "item/episode_index" in d else None
    fr = d["item/frame_index"] if "item/frame_index" in d else None
    for k in [str(x) for x in d["keys"]]:
        if not is_camera(k) or ep is None:
            continue
        frames = d[f"item/{k}"]
        deltas = camera_deltas(d, k)
        wrong, errs, examples = 0, [], []
        for n in range(len(frames)):
            e, f = int(ep[n]), int(fr[n])
            seq = frames[n] if deltas is not None else frames[n][None]
            for j, img in enumerate(seq):
                want_f = f if deltas is None else min(max(f + deltas[j], 0), lengths[e] - 1)
                got = decode_identity(img)
                errs.append(identity_error(img, e, want_f))
                if got != (e, want_f):
                    wrong += 1
                    if len(examples) < 5:
                        examples.append(
                            {"position": int(d["indices"][d["ok"]][n]), "want": [e, want_f], "got": list(got)}
                        )
        errs = np.asarray(errs)
        out[k] = {
            "frames": int(errs.size),
            "wrong_frames": wrong,
            "examples": examples,
            "codec_err_mean": float(errs.mean()) if errs.size else None,
            "codec_err_max": float(errs.max()) if errs.size else None,
        }
    return out


def episode_lengths_and_tasks(root: Path) -> tuple[dict[int, int], dict[int, int]]:
    info = json.loads((root / "meta/info.json").read_text())
    lengths, task_of = {}, {}
    if info["codebase_version"].startswith("v3"):
        import pyarrow.parquet as pq

        tasks = pq.read_table(root / "meta/tasks.parquet").to_pandas()
        t2i = {str(t): int(i) for t, i in zip(tasks.index, tasks["task_index"], strict=True)}
        for p in sorted(glob.glob(str(root / "meta/episodes/*/*.parquet"))):
            t = pq.read_table(p, columns=["episode_index", "length", "tasks"]).to_pylist()
            for r in t:
                lengths[r["episode_index"]] = r["length"]
                task_of[r["episode_index"]] = t2i[r["tasks"][0]]
    else:
        t2i = {}
        for line in (root / "meta/tasks.jsonl").read_text().splitlines():
            r = json.loads(line)
            t2i[r["task"]] = r["task_index"]
        for line in (root / "meta/episodes.jsonl").read_text().splitlines():
            r = json.loads(line)
            lengths[r["episode_index"]] = r["length"]
            task_of[r["episode_index"]] = t2i[r["tasks"][0]]
    return lengths, task_of


def expected_speed(lengths: dict[int, int], task_of: dict[int, int], population: list[int]) -> dict[int, int]:
    by_task = defaultdict(list)
    for e in population:
        by_task[task_of[e]].append(lengths[e])
    pct = {t: (None if len(set(v)) < 10 else np.percentile(v, SPEED_PCTS)) for t, v in by_task.items()}
    out = {}
    for e in population:
        p = pct[task_of[e]]
        out[e] = 50 if p is None else SPEED_LABELS[int(np.searchsorted(p, lengths[e], side="right"))]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dumps", type=Path)
    ap.add_argument("--data", type=Path, default=Path("/tmp/peer_data"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    dumps = [load(p) for p in sorted(glob.glob(str(args.dumps / "*.npz")))]
    summary: dict = {"dumps": {}, "pairs": [], "cross_writer": [], "identity": {}, "speed": {}}
    lengths_cache: dict[str, tuple] = {}

    def lt(ds_name):
        if ds_name not in lengths_cache:
            lengths_cache[ds_name] = episode_lengths_and_tasks(args.data / ds_name)
        return lengths_cache[ds_name]

    print("== dumps")
    for d in dumps:
        n_err = int((~d["ok"]).sum())
        first_err = next((str(e) for e in d["error"] if str(e)), "")
        summary["dumps"][d["_name"]] = {
            "items": int(len(d["indices"])),
            "errors": n_err,
            "first_error": first_err[:300],
            "len": int(d["len"]),
            "keys": [str(k) for k in d["keys"]],
            "dtypes": {str(k): str(d[f"dtype/{k}"]) for k in d["keys"]},
            "shapes": {str(k): d[f"shape/{k}"].tolist() for k in d["keys"]},
            "selected_episodes": d["selected_episodes"].tolist(),
            "hf_cache_bytes_added": int(d["hf_cache_bytes_added"]),
            "open_s": d["_info"]["open_seconds"],
            "read_s": d["_info"]["read_seconds"],
        }
        print(
            f"{d['_name']:<60} items={len(d['indices']):5d} err={n_err:4d} len={int(d['len']):6d} "
            f"cache+={int(d['hf_cache_bytes_added']) / 1e6:6.2f}MB sel={d['selected_episodes'].tolist()[:6]}"
            + (f"  FIRST ERROR: {first_err.splitlines()[0][:150]}" if first_err else "")
        )

    print("\n== same dataset, same query: reader vs reader")
    groups = defaultdict(list)
    for d in dumps:
        if int(d["ok"].sum()):
            groups[(d["_dataset"], d["_query"], d["_eps"])].append(d)
    for key in sorted(groups):
        g = groups[key]
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                r = compare_pair(g[i], g[j])
                summary["pairs"].append(r)
                _print_pair(r)

    print("\n== lr_X (LeRobot writer, v3.0) vs ot_X (OpenTau writer, v2.1), same reader family")
    by_name = {d["_name"]: d for d in dumps}
    for d in dumps:
        if not d["_dataset"].startswith("lr_"):
            continue
        other = f"ot_{d['_dataset'][3:]}__{d['_reader']}__{d['_query']}__{d['_eps']}"
        if d["_reader"].startswith("lerobot"):
            other = f"ot_{d['_dataset'][3:]}__opentau-torchcodec__{d['_query']}__{d['_eps']}"
        if other in by_name and int(d["ok"].sum()) and int(by_name[other]["ok"].sum()):
            r = compare_pair(d, by_name[other])
            summary["cross_writer"].append(r)
            _print_pair(r)

    print(
        "\n== identity pixels: is every returned frame the right one? codec error = mean |decoded - written|"
    )
    for d in dumps:
        if not int(d["ok"].sum()) or not any(is_camera(str(k)) for k in d["keys"]):
            continue
        ic = identity_check(d, lt(d["_dataset"])[0])
        summary["identity"][d["_name"]] = ic
        for k, v in ic.items():
            print(
                f"{d['_name']:<60} {k}: frames={v['frames']} wrong={v['wrong_frames']} "
                f"codec_err mean={v['codec_err_mean']:.4f} max={v['codec_err_max']:.4f} {v['examples'][:2]}"
            )

    print("\n== OpenTau speed labels")
    for d in dumps:
        if "speed_percentiles_jsonl" not in d or not int(d["ok"].sum()):
            continue
        lengths, task_of = lt(d["_dataset"])
        got = dict(
            zip(
                d["speed_raw_by_episode/episode"].tolist(),
                d["speed_raw_by_episode/value"].tolist(),
                strict=True,
            )
        )
        want_all = expected_speed(lengths, task_of, sorted(lengths))
        sel = sorted(got)
        want_sel = expected_speed(lengths, task_of, sel)
        rows = [json.loads(x) for x in str(d["speed_percentiles_jsonl"]).splitlines() if x.strip()]
        ent = {
            "file_rows": rows,
            "n_episodes_in_file": sum(r["n_episodes"] for r in rows),
            "labels_equal_whole_dataset_population": all(got[e] == want_all[e] for e in sel),
            "labels_equal_selected_population": all(got[e] == want_sel[e] for e in sel),
            "labels": got,
            "speed_raw_per_item_consistent": bool(
                np.array_equal(d["speed_raw_per_item"], [got[int(e)] for e in d["item/episode_index"]])
            ),
            "file_existed_before_open": d["_info"]["speed_file_existed_before_open"],
        }
        summary["speed"][d["_name"]] = ent
        print(
            f"{d['_name']:<60} rows={len(rows)} n_episodes_in_file={ent['n_episodes_in_file']} "
            f"=whole-dataset-labels:{ent['labels_equal_whole_dataset_population']} "
            f"=selected-population-labels:{ent['labels_equal_selected_population']} "
            f"file_existed:{ent['file_existed_before_open']} "
            f"null_rows={sum(r['percentiles'] is None for r in rows)}"
        )

    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, default=str))
        print(f"\nsummary -> {args.json}")
    return 0


def _print_pair(r: dict) -> None:
    bad = {k: v for k, v in r["values"].items() if not v.get("equal")}
    cams = {k: v for k, v in r["values"].items() if "max_abs" in v}
    dt = {k: (v["dtype_a"], v["dtype_b"]) for k, v in r["values"].items() if v["dtype_a"] != v["dtype_b"]}
    sh = {k: (v["shape_a"], v["shape_b"]) for k, v in r["values"].items() if v["shape_a"] != v["shape_b"]}
    line = f"{r['a']}  vs  {r['b']}: common={r['common_items']}"
    if not r["key_order_equal"]:
        line += f" KEYS only_a={r['only_a']} only_b={r['only_b']} (order equal: {r['key_order_equal']})"
    if dt:
        line += f" DTYPES {dt}"
    if sh:
        line += f" SHAPES {sh}"
    non_cam_bad = {k: v for k, v in bad.items() if k not in cams}
    line += " tabular: " + (
        "all equal"
        if not non_cam_bad
        else str(
            {
                k: (v.get("items_differ"), v.get("first_positions_differ", [])[:4], v.get("note"))
                for k, v in non_cam_bad.items()
            }
        )
    )
    for k, v in cams.items():
        line += (
            f" | {k}: max={v['max_abs']:.4f} mean={v['mean_abs']:.5f} p99.9={v['p999_abs']:.4f} "
            f"items_not_identical={v['items_not_identical']}"
        )
    print(line)


if __name__ == "__main__":
    raise SystemExit(main())
