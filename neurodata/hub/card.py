"""The README.md dataset card of a published store.

YAML front matter for the hub (licence, tags, task and size categories,
``configs:`` pointing ``datasets`` at the parquet files, class names) and a
body saying what the data is, how to load it both ways, its preview and its
provenance. Facts come from the store's attributes and, when given, the
neurodata dataset card.
"""
from __future__ import annotations

import json

import yaml

_TASKS = {"events": "image-classification", "timeseries": "time-series-forecasting",
          "imaging": "other", "connectome": "graph-ml"}
_TAGS = {"events": ["neuromorphic", "event-camera", "dvs", "spiking-neural-networks"],
         "timeseries": ["eeg", "neuroscience", "brain-computer-interface"],
         "imaging": ["calcium-imaging", "neuroscience", "two-photon"],
         "connectome": ["connectome", "neuroscience", "graph"]}


def size_category(n: int) -> str:
    """The hub's size category for ``n`` rows."""
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"),
                        (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")):
        if n < bound:
            return name
    return "n>1T"


def hub_license(licence: str | None) -> str:
    """Lower-case SPDX id the hub accepts (``other`` when unknown)."""
    if not licence:
        return "unknown"
    lic = str(licence).strip().lower()
    known = {"cc0-1.0", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0",
             "cc-by-3.0", "cc-by-sa-3.0", "cc-by-nc-3.0", "mit", "apache-2.0", "bsd-3-clause",
             "bsd-2-clause", "odc-by", "odbl", "pddl", "gpl-3.0", "unknown", "other"}
    return lic if lic in known else "other"


def make_card(store, configs: dict, repo_id: str, card: dict | None = None,
              preview: str | None = None) -> str:
    """README.md text for a publication of ``store``.

    Parameters
    ----------
    store : path
        The store (its attributes and summary are read).
    configs : dict
        ``config -> {split: [files]}`` as :func:`~neurodata.hub.export_parquet` returns.
    repo_id : str
        ``ORG/NAME`` (used in the loading examples).
    card : dict, optional
        The neurodata dataset card (homepage, citation, description).
    preview : str, optional
        Relative path of the preview image.
    """
    import neurodata

    ds = neurodata.open(str(store))
    attrs = dict(ds.attrs)
    modality = attrs.get("modality", "events")
    summary = ds.summary()
    card = card or {}
    n = int(summary.get("samples", len(ds)))
    meta = {
        "license": hub_license(card.get("license") or card.get("licence") or attrs.get("licence")),
        "pretty_name": card.get("title") or attrs.get("dataset") or repo_id.split("/")[-1],
        "tags": ["neurodata", "zarr"] + _TAGS.get(modality, []),
        "task_categories": [_TASKS.get(modality, "other")],
        "size_categories": [size_category(n)],
        "configs": [
            {"config_name": name, "data_files": [{"split": split, "path": [f for f in files]}
                                                 for split, files in sorted(splits.items())],
             **({"default": True} if k == 0 else {})}
            for k, (name, splits) in enumerate(configs.items())
        ],
    }
    classes = attrs.get("class_names") or []
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", ""]
    title = meta["pretty_name"]
    lines += [f"# {title}", ""]
    desc = card.get("description") or attrs.get("description")
    if desc:
        lines += [str(desc).strip(), ""]
    lines += [f"A neurodata store (`{attrs.get('neurodata_schema')}`, {modality}) with a parquet view.",
              ""]
    if preview:
        lines += [f"![preview]({preview})", ""]
    lines += ["## Contents", ""]
    for key in ("samples", "events", "sensor_size", "duration_s", "event_rate_hz", "classes",
                "recordings", "channels", "sfreq", "rois", "frames", "fs", "neurons", "edges"):
        if key in summary and summary[key] not in (None, {}, []):
            lines.append(f"- **{key}**: {_fmt(summary[key])}")
    if classes:
        lines.append(f"- **class names**: {', '.join(map(str, classes))}")
    lines += ["", "## Load it", "", "With neurodata (lazy, chunked reads of the zarr store):", "",
              "```python", "import neurodata",
              f'ds = neurodata.open("hf://datasets/{repo_id}/store.zarr")', "```", "",
              "With `datasets` (no neurodata needed):", "", "```python",
              "from datasets import load_dataset",
              f'ds = load_dataset("{repo_id}")' + ("" if "default" in configs or not configs else
                                                  f'  # configs: {", ".join(configs)}'),
              "```", "", "With xarray alone: `xarray.open_datatree(path_to_store_zarr, engine='zarr')`.",
              ""]
    if modality == "events":
        lines += ["Each parquet row is one sample: `x`, `y` (pixels; x = column), `t` "
                  "(microseconds, as recorded), `p` (0 = OFF, 1 = ON) as lists, and `label` "
                  "(index into the class names, -1 = none).", ""]
    cite = card.get("citation") or attrs.get("citation")
    if cite:
        lines += ["## Citation", "", "```bibtex", str(cite).strip(), "```", ""]
    prov = attrs.get("provenance") or {}
    if prov:
        lines += ["## Provenance", "", "```json", json.dumps(prov, indent=1)[:4000], "```", ""]
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)
