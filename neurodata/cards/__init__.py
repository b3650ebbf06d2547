"""Dataset cards: what each public dataset is, where its files live, how to convert it.

One YAML file per dataset sits next to this module (``nmnist.yaml``,
``dvsgesture.yaml``, ...); ``schema.json`` defines what a card may hold. A
card's facts (URLs, checksums, counts) come from the dataset's own pages and
papers, listed in its ``source`` field; unknown facts are ``null``.

>>> from neurodata import cards
>>> [c["name"] for c in cards.list_cards(modality="connectome")][:2]  # doctest: +SKIP
['cook2019', 'flywire783']
>>> cards.download_dataset("nmnist")  # doctest: +SKIP
PosixPath('/home/me/.cache/neurodata/nmnist')
"""
from __future__ import annotations

import difflib
import fnmatch
import functools
import json
import logging
import os
import re
from pathlib import Path

from neurodata.errors import (ChecksumError, DownloadError, FormatError, NeurodataError,
                              SchemaError)

logger = logging.getLogger("neurodata")

CARDS_DIR = Path(__file__).resolve().parent
SCHEMA_PATH = CARDS_DIR / "schema.json"
_ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar", ".zip")

__all__ = ["list_cards", "get_card", "load_card", "validate_card", "card_schema",
           "dataset_folder", "download_dataset", "verify_dataset", "convert_dataset"]


# --------------------------------------------------------------------------- reading cards
@functools.lru_cache(maxsize=1)
def card_schema() -> dict:
    """The JSON schema every card follows."""
    return json.loads(SCHEMA_PATH.read_text())


def validate_card(card: dict, path: str | os.PathLike | None = None) -> dict:
    """Raise :class:`SchemaError` (naming the field) unless ``card`` follows the schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(card_schema())
    errors = sorted(validator.iter_errors(card), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(card)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise SchemaError(f"card field {where}: {e.message}{more}", path)
    return card


def load_card(path: str | os.PathLike, validate: bool = True) -> dict:
    """Read one YAML card file (and check it against the schema)."""
    import yaml

    path = Path(path)
    try:
        card = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SchemaError(f"not valid YAML ({e.__class__.__name__})", path) from None
    if not isinstance(card, dict):
        raise SchemaError("a card must be a YAML mapping", path)
    if validate:
        try:
            validate_card(card, path)
        except ImportError:  # jsonschema absent: cards shipped with neurodata are tested
            pass
    return card


def _card_paths() -> dict[str, Path]:
    return {p.stem: p for p in sorted(CARDS_DIR.glob("*.yaml"))}


def list_cards(modality: str | None = None) -> list[dict]:
    """Every card (sorted by name), optionally only those of one modality."""
    out = [load_card(p, validate=False) for p in _card_paths().values()]
    if modality:
        out = [c for c in out if c.get("modality") == modality]
    return out


def get_card(name) -> dict:
    """The card of dataset ``name`` (a short id such as ``nmnist``, a card dict,
    or the path of a YAML card file).

    Raises
    ------
    NeurodataError
        Unknown name; the message suggests the closest known names.
    """
    if isinstance(name, dict):
        return validate_card(name)
    text = os.fspath(name)
    if text.endswith((".yaml", ".yml")) and Path(text).is_file():
        return load_card(text)
    paths = _card_paths()
    key = text.lower().replace("-", "_")
    if key not in paths:
        close = difflib.get_close_matches(key, list(paths), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `neurodata list`"
        raise NeurodataError(f"unknown dataset {text!r}{hint}")
    return load_card(paths[key])


# --------------------------------------------------------------------------- downloads
def dataset_folder(card) -> Path:
    """Where a dataset's files go: ``$NEURODATA_HOME/<name>``."""
    from neurodata.download import data_home

    card = get_card(card)
    return data_home() / card["name"]


def _strip_archive_suffix(name: str) -> str:
    low = name.lower()
    for s in _ARCHIVE_SUFFIXES:
        if low.endswith(s):
            return name[: -len(s)]
    return name


def _is_archive_entry(entry: dict) -> bool:
    if "extract" in entry:
        return bool(entry["extract"])
    return entry["name"].lower().endswith(_ARCHIVE_SUFFIXES)


def extracted_folder(card, entry: dict) -> Path:
    """The folder an archive file of the card unpacks into."""
    return dataset_folder(card) / _strip_archive_suffix(entry["name"])


def download_dataset(name, *, progress: bool = False, extract: bool = True,
                     session=None) -> Path:
    """Download (or reuse), verify and unpack every file of a dataset; return its folder.

    A gated dataset stops with :class:`~neurodata.errors.GatedDatasetError`
    carrying the card's instructions, unless the user has already placed its
    files in the dataset folder. An extracted folder whose manifest no longer
    matches (a file changed, went missing or appeared) is unpacked again
    from the verified archive.
    """
    from neurodata.download import RemoteFile, fetch, gated_error

    card = get_card(name)
    folder = dataset_folder(card)
    files = card.get("files") or []
    if card.get("gated"):
        if files:
            placed = all((folder / f["name"]).exists() for f in files)
        else:  # the card cannot name the files: any content placed by the user counts
            placed = folder.is_dir() and any(folder.iterdir())
        if not placed:
            raise gated_error(card["name"], card["gated"], folder, card.get("homepage"))
        if not files:
            return folder
    if not files:
        raise DownloadError("the card lists no direct download; get the files from "
                            f"{card['homepage']}" + (f" ({card['convert']['notes']})"
                                                    if card["convert"].get("notes") else ""),
                            card["name"])
    for entry in files:
        remote = RemoteFile.from_card(entry)
        if not remote.urls and not (folder / entry["name"]).exists():
            raise DownloadError("no download URL is known for this file; get it from "
                                f"{card['homepage']} and place it at {folder / entry['name']}",
                                entry["name"])
        path = fetch(remote, folder, progress=progress, session=session)
        if extract and _is_archive_entry(entry):
            _ensure_extracted(path, extracted_folder(card, entry), entry.get("nested") or [])
    return folder


def _ensure_extracted(archive: Path, target: Path, nested: list[str]) -> Path:
    from neurodata.download import extract_archive, verify_manifest, write_manifest

    if target.exists():
        try:
            verify_manifest(target, deep=False)
            return target
        except ChecksumError as e:
            logger.warning("%s; unpacking %s again", e, archive.name)
    extract_archive(archive, target, overwrite=True, manifest=not nested)
    if nested:
        for inner in sorted(p for p in target.rglob("*") if p.is_file()):
            rel = inner.relative_to(target).as_posix()
            if any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(inner.name, pat) for pat in nested):
                extract_archive(inner, inner.parent / _strip_archive_suffix(inner.name),
                                overwrite=True, manifest=False)
        write_manifest(target, archive)
    return target


def verify_dataset(name, deep: bool = True) -> list[dict]:
    """Check a downloaded dataset: each file's checksum and each extracted folder's manifest.

    Returns one dict per checked item with ``item``, ``status``
    (``ok``/``missing``/``bad``/``unchecked``) and ``detail``.
    """
    from neurodata.download import file_digest, verify_file, verify_manifest

    card = get_card(name)
    folder = dataset_folder(card)
    report = []
    for entry in card.get("files") or []:
        path = folder / entry["name"]
        if not path.exists():
            report.append({"item": str(path), "status": "missing", "detail": "not downloaded"})
            continue
        if path.is_dir():
            n = sum(1 for p in path.rglob("*") if p.is_file())
            report.append({"item": str(path), "status": "unchecked",
                           "detail": f"folder placed by the user ({n} files)"})
            continue
        if not (entry.get("sha256") or entry.get("md5") or entry.get("size") is not None):
            report.append({"item": str(path), "status": "unchecked",
                           "detail": f"no published checksum; sha256 {file_digest(path)}"})
        else:
            try:
                verify_file(path, entry.get("sha256"), entry.get("md5"), entry.get("size"))
                algo = "sha256" if entry.get("sha256") else ("md5" if entry.get("md5") else "size")
                report.append({"item": str(path), "status": "ok", "detail": f"{algo} matches"})
            except ChecksumError as e:
                report.append({"item": str(path), "status": "bad", "detail": e.reason})
        if _is_archive_entry(entry):
            target = extracted_folder(card, entry)
            if not target.exists():
                report.append({"item": str(target), "status": "missing", "detail": "not extracted"})
                continue
            try:
                doc = verify_manifest(target, deep=deep)
                report.append({"item": str(target), "status": "ok",
                               "detail": f"{len(doc['files'])} files match the manifest"})
            except ChecksumError as e:
                report.append({"item": str(target), "status": "bad", "detail": str(e)})
    return report


# --------------------------------------------------------------------------- conversion
def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.as_posix())]


def _source_files(card, folder: Path) -> list[Path]:
    conv = card["convert"]
    pattern = conv.get("pattern") or "**/*"
    exclude = conv.get("exclude") or []
    downloads = {f["name"] for f in card.get("files") or []}
    out = []
    for p in folder.glob(pattern):
        rel = p.relative_to(folder).as_posix()
        if not p.is_file() or p.name.endswith(".part") or p.name.startswith("."):
            continue
        if p.parent == folder and p.name in downloads and _is_archive_entry(
                next(f for f in card["files"] if f["name"] == p.name)):
            continue
        if any(fnmatch.fnmatch(rel, pat) for pat in exclude):
            continue
        out.append(p)
    # the card's file order first (train before test), then natural path order
    roots = [extracted_folder(card, e) if _is_archive_entry(e) else folder / e["name"]
             for e in card.get("files") or []]

    def rank(p: Path) -> int:
        return next((i for i, r in enumerate(roots) if p == r or r in p.parents), len(roots))

    return sorted(out, key=lambda p: (rank(p), _natural_key(p)))


def _split_rules(card, folder: Path):
    """Map a source file to its split, following the card's ``splits`` rule."""
    from neurodata.conversion import _SPLIT_NAMES

    rule = card["convert"].get("splits", "from_file")
    roots = []
    for entry in card.get("files") or []:
        root = extracted_folder(card, entry) if _is_archive_entry(entry) else folder / entry["name"]
        roots.append((root, entry.get("split") or ""))

    def split_of(path: Path) -> str:
        if rule == "none":
            return ""
        if rule == "from_file":
            for root, split in roots:
                if path == root or root in path.parents:
                    return split
            return ""
        for part in path.relative_to(folder).parts[:-1]:
            if part.lower() in _SPLIT_NAMES:
                return _SPLIT_NAMES[part.lower()]
        return ""

    return split_of


def _label_key(path: Path, rule: str, mapping: dict) -> str:
    if rule == "parent_folder":
        return path.parent.name
    if rule == "any_folder":  # the nearest enclosing folder named like a class
        for part in reversed(path.parts[:-1]):
            if part in mapping:
                return part
        return path.parent.name
    return re.split(r"[_\-. ]", path.stem)[0]


def _label_rule(card, files: list[Path]):
    """``(label_of(path) -> int | None, class_names)`` following the card's ``labels`` rule.

    Without ``classes`` and ``label_map`` on the card, folder-named classes are
    the sorted folder names found among ``files``.
    """
    conv = card["convert"]
    rule = conv.get("labels", "none")
    classes = list(card.get("classes") or [])
    mapping = dict(conv.get("label_map") or {})
    if not mapping and classes:
        mapping = {c: i for i, c in enumerate(classes)}
    if not mapping and rule in ("parent_folder", "file_stem_prefix"):
        keys = sorted({_label_key(f, rule, {}) for f in files},
                      key=lambda k: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", k)])
        mapping = {k: i for i, k in enumerate(keys)}
        classes = keys

    def label_of(path: Path) -> int | None:
        if rule == "from_file":
            return None  # the loader's own labels
        if rule == "none":
            return -1
        key = _label_key(path, rule, mapping)
        if key not in mapping:
            raise FormatError(f"cannot label this file: {key!r} is not a class of "
                              f"{card['name']} ({', '.join(list(mapping)[:12])}...)", path)
        return int(mapping[key])

    return label_of, (classes or None)


def convert_dataset(name, out, *, overwrite: bool = False, progress: bool = False,
                    session=None) -> Path:
    """Download (or reuse), unpack and convert a registered dataset into the store ``out``.

    The card's ``convert`` section names the loader, which files are
    samples, and how labels and splits follow from the files. The store
    carries the card's licence, citation and homepage as attributes.

    Returns
    -------
    Path of the finished store.
    """
    from neurodata import loaders
    from neurodata.format.store import atomic_store, file_sha256, provenance

    card = get_card(name)
    conv = card["convert"]
    if not conv.get("loader"):
        raise NeurodataError("no loader converts this dataset yet" +
                             (f" ({conv['notes']})" if conv.get("notes") else ""), card["name"])
    spec = loaders.get(conv["loader"])
    folder = download_dataset(card, progress=progress, session=session)
    attrs = {"dataset": card["name"], "title": card["title"], "license": card.get("license"),
             "citation": card.get("citation"), "homepage": card["homepage"]}
    multi = conv.get("method", "files") != "single"
    if multi and spec.modality == "timeseries" and hasattr(spec.load(), "add_file"):
        out = _convert_recordings(card, spec, folder, out, attrs, overwrite, progress)
        _check_expected(card, out)
        return out
    if spec.modality != "events" and multi:
        n = len(_source_files(card, folder))
        raise NeurodataError(f"{n} {spec.modality} recordings in {folder}: converting a "
                             "multi-file dataset of this modality into one store is not supported "
                             "yet; convert each file with `neurodata convert FILE OUT`",
                             card["name"])
    if conv.get("method", "files") == "single":
        from neurodata.conversion import convert

        src = folder / conv["input"] if conv.get("input") else folder
        out = convert(src, out, spec.name, overwrite=overwrite, attrs=attrs, progress=progress)
        _check_expected(card, out)
        return Path(out)
    files = _source_files(card, folder)
    if not files:
        raise FormatError(f"no source files match {conv.get('pattern')!r}", folder)
    split_of = _split_rules(card, folder)
    label_of, class_names = _label_rule(card, files)
    from neurodata.format.events import EventStoreWriter

    bar = _progress(len(files), progress)
    digests, tags = [], set()
    with atomic_store(out, overwrite=overwrite) as tmp:
        w = EventStoreWriter(tmp, sensor_size=card.get("sensor_size"),
                             class_names=class_names, attrs=attrs)
        for f in files:
            rec = loaders.read_events(f, spec.name)
            tags.add(rec.format)
            if w.class_names is None and getattr(rec, "class_names", None):
                w.class_names = list(rec.class_names)  # e.g. SHD's extra/keys
            w.add_recording(rec, source=f.relative_to(folder).as_posix(), label=label_of(f),
                            split=split_of(f))
            digests.append(file_sha256(f))
            bar.update(1)
        bar.close()
        w.close(provenance(files, loader=", ".join(sorted(tags)), checksums=digests,
                           dataset=card["name"]))
    _check_expected(card, out)
    return Path(out)


def _convert_recordings(card, spec, folder: Path, out, attrs, overwrite, progress) -> Path:
    """Every source file of a time-series dataset as recording groups of one store.

    Groups are named after the file's path in the dataset (``S001/S001R04.edf`` ->
    ``S001_S001R04``); each carries ``source`` (that path) and ``split``.
    """
    from neurodata.format.store import atomic_store, file_sha256, provenance
    from neurodata.format.timeseries import TimeseriesStoreWriter, recording_name

    files = _source_files(card, folder)
    if not files:
        raise FormatError(f"no source files match {card['convert'].get('pattern')!r}", folder)
    split_of = _split_rules(card, folder)
    mod = spec.load()
    bar = _progress(len(files), progress)
    with atomic_store(out, overwrite=overwrite) as tmp:
        w = TimeseriesStoreWriter(tmp, attrs=attrs)
        for f in files:
            rel = f.relative_to(folder)
            mod.add_file(w, f, name=recording_name(rel.with_suffix("").as_posix()
                                                   .replace("/", "_")),
                         extra_attrs={"source": rel.as_posix(), "split": split_of(f)})
            bar.update(1)
        bar.close()
        w.close(provenance(files, loader=f"{spec.name}/{mod.VERSION}",
                           checksums=[file_sha256(f) for f in files], dataset=card["name"]))
    return Path(out)


def _check_expected(card, out) -> None:
    expected = card.get("expected") or {}
    if not expected:
        return
    import neurodata

    try:
        ds = neurodata.open(str(out))
        n = len(ds)
    except Exception:  # the store exists; the count check is advisory
        return
    total = expected.get("total", expected.get("recordings"))
    if total is None:
        parts = [v for k, v in expected.items() if k in ("train", "test", "val", "valid")]
        total = sum(parts) if parts and all(v is not None for v in parts) else None
    if total is not None and n != total:
        logger.warning("%s: converted %d samples, the card expects %d (incomplete download or "
                       "changed release?)", card["name"], n, total)


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total, enabled):
    if not enabled or total < 2:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", desc="convert")
