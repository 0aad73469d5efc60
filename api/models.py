"""What the API takes and gives: request and response bodies."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from api.auth import Role

MAX_BIGINT = 2**63 - 1
MAX_INT = 2**31 - 1
# Numbers in bodies are strict: `true` or "5" is not a quantity.
Id = Annotated[int, Field(strict=True, ge=1, le=MAX_BIGINT)]
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_INT, description="How many units, 1 or more.")]
Threshold = Annotated[
    int, Field(strict=True, ge=0, le=MAX_INT, description="At or below it, a stocked item is running low.")
]


def _printable(name: str) -> str:
    if not name.isprintable():
        raise ValueError("must be printable text: no control, format or separator characters but spaces")
    return name


# Printable text (PostgreSQL cannot store NUL, and a tab or a zero-width space in a name is a mistake). The pattern
# says what a schema can; isprintable() the rest.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$"),
    AfterValidator(_printable),
]


def _iso_time(value: object) -> object:
    if isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit():
        raise ValueError("must be an ISO 8601 time such as 2026-11-27T08:00:00Z, not a number")
    return value


def _in_utc(value: datetime) -> datetime:
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as e:
        raise ValueError("is out of range once in UTC") from e


# A time in a query: ISO 8601 only (pydantic would also take a number of seconds, which the schema does not say);
# without a zone it is UTC (not the server's local time).
IsoTime = Annotated[datetime, BeforeValidator(_iso_time), AfterValidator(_in_utc)]


class StockStatus(StrEnum):
    available = "available"
    running_low = "running_low"
    out_of_stock = "out_of_stock"


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Balance(BaseModel):
    product_id: int
    warehouse_id: int
    quantity: int
    status: StockStatus
    updated_at: datetime | None
    """When the balance was last written; null for a pair never stocked."""


class BalanceAfterWrite(Balance):
    previous_status: StockStatus
    """The status before this write: it differs from `status` when the write changed it."""


class StatusChangeCount(BaseModel):
    status_changes: int
    """Every status change ever made, exact at the moment of the request."""


class OperationIn(Input):
    operation_type: Literal["receipt", "shipment", "adjustment"]
    product_id: Id
    warehouse_id: Id
    quantity: Annotated[int, Field(strict=True, ge=-MAX_INT, le=MAX_INT)]
    """receipt and shipment: how many units come in or go out (1 or more). adjustment: the signed correction
    (+5 found, -3 lost; not 0)."""

    @field_validator("quantity")
    @classmethod
    def _quantity_fits_type(cls, quantity: int, info: ValidationInfo) -> int:
        kind = info.data.get("operation_type")
        if kind == "adjustment" and quantity == 0:
            raise ValueError("an adjustment changes the quantity: give a signed amount other than 0")
        if kind in ("receipt", "shipment") and quantity < 1:
            raise ValueError(f"a {kind} moves 1 unit or more; for a correction use an adjustment")
        return quantity

    @property
    def signed_quantity(self) -> int:
        return -self.quantity if self.operation_type == "shipment" else self.quantity


class OperationOut(BaseModel):
    operation_id: int
    operation_type: str
    product_id: int
    warehouse_id: int
    quantity: int
    created_at: datetime
    balance: BalanceAfterWrite


class TransferIn(Input):
    product_id: Id
    from_warehouse_id: Id
    to_warehouse_id: Id
    quantity: Quantity

    @field_validator("to_warehouse_id")
    @classmethod
    def _two_warehouses(cls, to_warehouse: int, info: ValidationInfo) -> int:
        if to_warehouse == info.data.get("from_warehouse_id"):
            raise ValueError("a transfer moves stock between two different warehouses: this is from_warehouse_id")
        return to_warehouse


class TransferOut(BaseModel):
    transfer_id: UUID
    product_id: int
    quantity: int
    source: BalanceAfterWrite
    destination: BalanceAfterWrite


class ProductIn(Input):
    name: Name
    low_stock_threshold: Threshold = 10


class ProductPatch(Input):
    name: Name | None = None
    low_stock_threshold: Threshold | None = None
    """A new threshold re-evaluates the product's status at every warehouse at once."""

    @model_validator(mode="after")
    def _changes_something(self) -> "ProductPatch":
        if self.name is None and self.low_stock_threshold is None:
            raise ValueError("give name, low_stock_threshold or both")
        return self


class Product(BaseModel):
    id: int
    name: str
    low_stock_threshold: int
    created_at: datetime


class WarehouseIn(Input):
    name: Name


class Warehouse(BaseModel):
    id: int
    name: str
    created_at: datetime


class ApiKeyIn(Input):
    name: Name
    role: Role


class ApiKey(BaseModel):
    id: int
    name: str
    role: Role
    key_prefix: str
    """The key's first characters, to tell keys apart."""
    created_at: datetime
    revoked_at: datetime | None


class NewApiKey(ApiKey):
    key: str
    """The key itself. Shown only in this response: the API stores its hash."""


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    postgresql: Literal["ok"]
    kafka: str
    """"ok", "not used yet" (no live stream has been opened) or why the live streams cannot read it."""


class StatusChangeRecord(BaseModel):
    """One stored status change (the event as published; see bridge/events.py)."""

    event_id: UUID
    occurred_at: datetime
    product_id: int
    warehouse_id: int
    old_status: StockStatus
    new_status: StockStatus
    quantity: int
    operation_id: int | None


class StatusTotals(BaseModel):
    """How many (product, warehouse) balances have each status now."""

    available: int
    running_low: int
    out_of_stock: int


class MinuteCount(BaseModel):
    minute: datetime
    """The start of the minute (UTC)."""
    changes: int
