"""The orchestrator's `SecretSource` over the wallet's secret delivery: a replica's secret is
asked of the owner's vault members when its container is created, and its values handed over
in memory. A delivery that cannot happen now becomes the orchestrator's `SecretUnavailable`,
with the reason (never a value): the container waits, and is tried again after its back-off."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

from chain.clock import Clock
from chain.primitives import AccountId
from orchestrator.secrets import SecretUnavailable
from wallet.secret_delivery import SecretDelivery
from wallet.secret_delivery import SecretUnavailable as NotDelivered
from wallet.secret_partials import SecretQuery

log = logging.getLogger("statemesh.node.secrets")


class DeliveredSecrets:
    """`orchestrator.secrets.SecretSource` through `wallet.secret_delivery.SecretDelivery`."""

    __slots__ = ("_clock", "_delivery", "outcomes")

    def __init__(self, delivery: SecretDelivery, clock: Clock) -> None:
        self._delivery = delivery
        self._clock = clock
        self.outcomes: Counter[str] = Counter()
        """Deliveries by outcome: delivered, unavailable."""

    async def secret_data(
        self, owner: bytes, name: str, version: int, app: str, replica: int
    ) -> Mapping[str, bytes]:
        query = SecretQuery(AccountId(owner), name, version, app, replica)
        started = self._clock.monotonic()
        try:
            delivered = await self._delivery.fetch(query)
        except NotDelivered as error:
            self.outcomes["unavailable"] += 1
            raise SecretUnavailable(error.reason) from None
        self.outcomes["delivered"] += 1
        log.info(
            "%s delivered in %.3f s by members %s%s",
            query.describe(),
            self._clock.monotonic() - started,
            ", ".join(f"0x{m.hex()[:12]}" for m in delivered.members),
            "; bad partial decryptions from " + ", ".join(f"0x{m.hex()}" for m in delivered.faulty)
            if delivered.faulty
            else "",
        )
        return delivered.values

    def statistics(self) -> dict[str, int]:
        return dict(self.outcomes)
