"""Entry point of the ``neurodata`` command.

Each verb lives in its own module ``neurodata.cli.<verb>`` with
``add_parser(subparsers)`` and ``run(args) -> int``. Errors with input data
print one line and exit with status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from neurodata._version import __version__
from neurodata.errors import NeurodataError

#: verbs in the order ``--help`` lists them
VERBS = ["demo", "list", "info", "download", "convert", "inspect", "verify", "preview",
         "stats", "publish", "pull"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neurodata",
        description="Convert neuro recordings into one chunked format and stream them.")
    parser.add_argument("--version", action="version", version=f"neurodata {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for verb in VERBS:
        try:
            mod = importlib.import_module(f"neurodata.cli.{verb}")
        except ModuleNotFoundError as e:
            if e.name == f"neurodata.cli.{verb}":
                continue  # verb not built yet
            raise
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        return int(args._run(args) or 0)
    except NeurodataError as e:
        print(f"neurodata {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"neurodata {args.verb}: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"neurodata {args.verb}: error: {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as e:  # bad options given to a loader or transform
        print(f"neurodata {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"neurodata {args.verb}: error: missing optional dependency {e.name!r} "
              f"(install the matching extra, e.g. pip install 'neurodata[all]')", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
