"""`python -m renderer serve` (gRPC API) or `python -m renderer work` (GPU worker)."""

import sys

from renderer.server import serve, work

if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if role == "serve":
        serve()
    elif role == "work":
        work()
    else:
        raise SystemExit("usage: python -m renderer [serve|work]")
