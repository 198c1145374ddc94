"""`python -m retention serve`."""

import sys

from retention.server import main

if __name__ == "__main__":
    if sys.argv[1:] not in ([], ["serve"]):
        raise SystemExit("usage: python -m retention [serve]")
    main()
