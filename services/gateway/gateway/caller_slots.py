"""How many long requests (event streams, exports) each caller holds open on this replica, with a cap.

A slot is taken before the route runs and given back when its response has ended, however it ends (the
stream finished, the client went away, the route failed): `gateway.edge` holds it around the whole ASGI
call, so no path through the route can leak one. Only callers holding slots are remembered, so the table
is bounded by the requests in flight.

Per replica: N replicas let a caller hold N times the cap (issue "Many tenants, one fleet" makes it
cluster-wide).
"""

from __future__ import annotations

from collections.abc import Hashable


class CallerSlots:
    def __init__(self, per_caller: int) -> None:
        self.per_caller = per_caller
        self._held: dict[Hashable, int] = {}

    def try_take(self, key: Hashable) -> bool:
        held = self._held.get(key, 0)
        if held >= self.per_caller:
            return False
        self._held[key] = held + 1
        return True

    def give_back(self, key: Hashable) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            self._held.pop(key, None)

    def held(self, key: Hashable) -> int:
        return self._held.get(key, 0)
