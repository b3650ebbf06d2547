"""``neurodata pull hf://datasets/ORG/NAME OUT``: a published store to a local folder."""
from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("pull", help="download a published store from the HuggingFace hub")
    p.add_argument("url", help="hf://datasets/ORG/NAME[@REVISION][/PATH]")
    p.add_argument("out", help="local folder")
    p.add_argument("--endpoint", help="hub URL (default HF_ENDPOINT or huggingface.co)")
    return p


def run(args) -> int:
    from neurodata.hub import pull

    store = pull(args.url, args.out, endpoint=args.endpoint)
    print(f"pulled {args.url} -> {store}")
    return 0
