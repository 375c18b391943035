"""Errors the warehouse sees: each message says what was refused, why, and what to do instead."""


class FulfillmentError(Exception):
    """A request the fulfillment rules refuse; `str(error)` is meant for a warehouse user."""


class IllegalShipmentStep(FulfillmentError):
    """The shipment is not in a state that allows this step (e.g. ship before pack)."""


class CancelRefused(FulfillmentError):
    """The shipment has left the building; only a return can bring the goods back."""


class InvalidPick(FulfillmentError):
    """A pick confirmation that does not match the pick list (unknown sku, too many units)."""


class PackingError(FulfillmentError):
    """A package cannot be built: missing variant data, or a weight or size that is not positive."""


class NoCarrierAvailable(FulfillmentError):
    """No configured carrier can take the packages at the requested service level."""


class ReturnRefused(FulfillmentError):
    """A return (RMA) step that is not allowed, e.g. returning more than was shipped."""
