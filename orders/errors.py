"""Application errors of the write side, each with an HTTP status and a stable code."""

from rest_framework import status
from rest_framework.exceptions import APIException


class ShopError(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The request cannot be carried out."
    default_code = "shop_error"


class NotFound(ShopError):
    status_code = status.HTTP_404_NOT_FOUND
    default_detail = "Not found."
    default_code = "not_found"


class Conflict(ShopError):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class InsufficientStock(Conflict):
    default_detail = "Not enough stock for this order."
    default_code = "insufficient_stock"


class InsufficientBalance(Conflict):
    default_detail = "The customer's balance does not cover this payment."
    default_code = "insufficient_balance"


class InvalidTransition(Conflict):
    default_detail = "The order cannot move to that status from its current one."
    default_code = "invalid_transition"


class ProductUnavailable(Conflict):
    default_detail = "A product in this order is not for sale."
    default_code = "product_unavailable"

    def __init__(self, product_id: int):
        super().__init__(f"Product {product_id} is not for sale.")
        self.product_id = product_id

    def as_missing(self) -> NotFound:
        """The refusal for someone who may not see inactive products: as if it were not there."""
        return NotFound(f"No such product: {self.product_id}.")


class AlreadyExists(Conflict):
    default_detail = "It already exists."
    default_code = "already_exists"


class AmountTooLarge(Conflict):
    default_detail = "The resulting amount is larger than the shop can hold."
    default_code = "amount_too_large"


class PreconditionFailed(ShopError):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The resource has changed since you read it (If-Match does not match)."
    default_code = "version_mismatch"


class IdempotencyKeyReused(ShopError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was already used with a different request."
    default_code = "idempotency_key_reused"
