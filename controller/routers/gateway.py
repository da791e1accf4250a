"""The built-in gateway: every replica reads the weights from the database (committed by the
transition itself, announced by NOTIFY and polling), so there is nothing to send."""

from __future__ import annotations

from controller.routers.base import Acknowledgement, DesiredWeights


class GatewayRouter:
    kind = "gateway"

    def apply(self, desired: DesiredWeights) -> Acknowledgement:
        return Acknowledgement(desired.revision, desired.challenger_weight_bp)
