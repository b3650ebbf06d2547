"""``neurodata convert SRC OUT``: files or folders into a store."""
from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("convert", help="convert a file, folder or registered dataset into a store",
                       description="Convert SRC (a file, a folder of files, or a dataset name "
                                   "from `neurodata list`) into the zarr store OUT.")
    p.add_argument("src", help="file, folder, dataset name, or a query URL "
                   "(neuprint://HOST/DATASET, cave://HOST/DATASTACK/TABLE)")
    p.add_argument("out", help="output store folder (e.g. data.zarr)")
    p.add_argument("--format", help="force a source format (see `neurodata list --formats`)")
    p.add_argument("--labels-from-folders", action="store_true",
                   help="label each file by its parent folder name")
    p.add_argument("--sensor-size", type=int, nargs=3, metavar=("W", "H", "P"),
                   help="override the sensor size")
    p.add_argument("--fs", type=float, help="sampling/frame rate when the source lacks it")
    p.add_argument("--deidentify", action="store_true",
                   help="drop subject-identifying header fields (EEG)")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a loader option, e.g. -o sex=male -o nmj=false (repeatable; values "
                        "are read as JSON when they parse, else as text)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def run(args) -> int:
    from pathlib import Path

    from neurodata.conversion import convert

    kw = parse_options(args.option)
    if args.fs is not None:
        kw["fs"] = args.fs
    if args.deidentify:
        kw["deidentify"] = True
    src = args.src
    if not Path(src).exists() and "://" not in src:
        try:
            from neurodata.cards import convert_dataset  # registered dataset name
        except ImportError:
            convert_dataset = None
        if convert_dataset is not None:
            out = convert_dataset(src, args.out, overwrite=args.overwrite,
                                  progress=not args.no_progress)
            _report(out, args.json)
            return 0
    out = convert(src, args.out, args.format, labels_from_folders=args.labels_from_folders,
                  sensor_size=args.sensor_size, overwrite=args.overwrite,
                  progress=not args.no_progress, **kw)
    _report(out, args.json)
    return 0


def parse_options(items) -> dict:
    """``["a=1", "b=x,y", "c=true"]`` -> ``{"a": 1, "b": "x,y", "c": True}``."""
    from neurodata.errors import NeurodataError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise NeurodataError(f"loader option {item!r} is not KEY=VALUE")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except ValueError:
            out[key.strip().replace("-", "_")] = value
    return out


def _report(out, as_json: bool) -> None:
    import neurodata

    ds = neurodata.open(str(out))
    if as_json:
        from neurodata.cli.inspect import summary_of

        print(json.dumps(summary_of(ds), default=str))
    else:
        print(f"wrote {out}: {ds!r}")
