"""``neurodata publish STORE --repo ORG/NAME``: the store and its parquet view to the hub."""
from __future__ import annotations

import argparse
import json


def add_parser(sub):
    p = sub.add_parser("publish", help="publish a store to the HuggingFace hub",
                       description="Upload the zarr store, a parquet view for `datasets` and a "
                                   "dataset card. With --dry-run, write exactly what would be "
                                   "uploaded into OUT_DIR instead.")
    p.add_argument("store", help="store folder")
    p.add_argument("out_dir", nargs="?", help="with --dry-run: folder to write")
    p.add_argument("--repo", help="ORG/NAME of the dataset repository")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--revision", help="branch to commit to (default main)")
    p.add_argument("--parquet", action=argparse.BooleanOptionalAction, default=True,
                   help="also publish the parquet view (default: yes)")
    p.add_argument("--dry-run", action="store_true", help="stage into OUT_DIR, upload nothing")
    p.add_argument("--endpoint", help="hub URL (default HF_ENDPOINT or huggingface.co)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def run(args) -> int:
    from neurodata.errors import NeurodataError
    from neurodata.hub import publish

    if args.dry_run:
        if not args.out_dir:
            raise NeurodataError("--dry-run needs OUT_DIR")
        res = publish(args.store, args.repo or "ORG/NAME", parquet=args.parquet,
                      dry_run_dir=args.out_dir)
    else:
        if not args.repo:
            raise NeurodataError("--repo ORG/NAME is required")
        res = publish(args.store, args.repo, private=args.private, revision=args.revision,
                      parquet=args.parquet, endpoint=args.endpoint)
    if args.json:
        print(json.dumps(res))
    elif args.dry_run:
        print(f"staged in {res['staged']} (nothing uploaded)")
    else:
        print(f"published {args.store} to {args.repo}: {len(res['uploaded'])} files uploaded, "
              f"{len(res['skipped'])} already there, {len(res['commits'])} commit(s)")
    return 0
