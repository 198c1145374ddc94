"""`python -m ingest serve`."""

import sys

from ingest.server import main

if __name__ == "__main__":
    if sys.argv[1:] not in ([], ["serve"]):
        raise SystemExit("usage: python -m ingest [serve]")
    main()
