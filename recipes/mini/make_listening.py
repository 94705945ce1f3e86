#!/usr/bin/env python3
"""Stage 8 of the mini recipe: webMUSHRA MUSHRA and semantic-MOS tests over the decoded systems.

English test items only for the semantic test (its page shows the transcript). Writes
``<out>/mushra_test.yaml``, ``<out>/semantic_test.yaml`` and their stimuli.
"""

import argparse
import sys

from speechbrain_codec.dataio import read_manifest, write_manifest
from speechbrain_codec.listening import make_test
from speechbrain_codec.utils import CodecError

parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
parser.add_argument("--test-manifest", required=True)
parser.add_argument("--data_folder", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--items", type=int, default=3)
parser.add_argument("--system", action="append", default=[], metavar="NAME=FOLDER")
args = parser.parse_args()
systems = dict(s.split("=", 1) for s in args.system)
try:
    print(make_test(args.out, args.test_manifest, systems, "mushra", n_items=args.items, data_root=args.data_folder))
    english = [r for r in read_manifest(args.test_manifest).values() if r["lang"] == "en" and r["text"]]
    write_manifest(f"{args.out}/english.csv", english)
    print(make_test(args.out, f"{args.out}/english.csv", systems, "semantic", n_items=min(args.items, len(english)),
                    data_root=args.data_folder))
except CodecError as err:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(1)
