"""What the API takes and gives: request and response bodies."""

from datetime import UTC, date, datetime
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


class Operation(BaseModel):
    """One row of the ledger: a movement, never changed once written."""

    operation_id: int
    operation_type: Literal["receipt", "shipment", "transfer_in", "transfer_out", "adjustment"]
    product_id: int
    warehouse_id: int
    change: int
    """The signed change of the balance: +15 for a receipt of 15, -6 for a shipment of 6."""
    transfer_id: UUID | None
    """Both legs of a transfer carry it."""
    document_id: int | None
    """The document (POST /documents) the operation is a line of."""
    actor: str | None
    """Who made it: the API key's name, an SQL writer's `warehouse.actor` setting, else its database role; null
    for operations recorded before actors were."""
    api_key_id: int | None
    """The API key that made it, if one did."""
    created_at: datetime


class Transfer(BaseModel):
    transfer_id: UUID
    product_id: int
    quantity: int
    from_warehouse_id: int
    to_warehouse_id: int
    created_at: datetime
    actor: str | None
    legs: list[Operation]
    """transfer_out at the source, transfer_in at the destination."""


MAX_LINES = 10_000  # of a document or an inventory count: applied in one statement


def _distinct_pairs(pairs: list[tuple[int, int]], what: str) -> None:
    first: dict[tuple[int, int], int] = {}
    for i, pair in enumerate(pairs):
        if pair in first:
            raise ValueError(
                f"line {i} {what} product {pair[0]} at warehouse {pair[1]} again (first: line {first[pair]})"
            )
        first[pair] = i


class CountLine(Input):
    product_id: Id
    warehouse_id: Id
    counted: Annotated[int, Field(strict=True, ge=0, le=MAX_INT, description="How many were counted, 0 or more.")]


class InventoryCountIn(Input):
    counts: Annotated[list[CountLine], Field(min_length=1, max_length=MAX_LINES)]
    """Each pair once."""

    @field_validator("counts")
    @classmethod
    def _each_pair_once(cls, counts: list[CountLine]) -> list[CountLine]:
        _distinct_pairs([(c.product_id, c.warehouse_id) for c in counts], "counts")
        return counts


class CountedLine(BaseModel):
    line: int
    """The line's index in the request's `counts`, from 0."""
    product_id: int
    warehouse_id: int
    counted: int
    stored: int
    """What the balance said when counted."""
    difference: int
    """counted - stored: the adjustment recorded (0: none)."""
    operation_id: int | None
    """The adjustment; null when the count matched."""
    balance: BalanceAfterWrite


class InventoryCountOut(BaseModel):
    adjusted: int
    """Lines whose count differed from the balance (each got an adjustment)."""
    lines: list[CountedLine]


class TransferLine(TransferIn):
    operation_type: Literal["transfer"]


DocumentLine = Annotated[OperationIn | TransferLine, Field(discriminator="operation_type")]


class DocumentIn(Input):
    reference: Annotated[Name | None, Field(description="Your own number for it (a delivery note's), if any.")] = None
    lines: Annotated[list[DocumentLine], Field(min_length=1, max_length=MAX_LINES)]
    """Receipts, shipments, adjustments (as POST /operations takes them) and transfers (as POST /transfers, with
    `"operation_type": "transfer"`), applied in this order, all or nothing."""


class DocumentOut(BaseModel):
    document_id: int
    reference: str | None
    lines: int
    operation_ids: list[int]
    """The operations written, in line order; a transfer's line has two (out, then in)."""
    created_at: datetime
    balances: list[BalanceAfterWrite]
    """Every pair the document touched, as it left it, by product and warehouse."""


class MovementTotals(BaseModel):
    """Units moved in a report's period, for one warehouse, product or day (the others null)."""

    warehouse_id: int | None
    product_id: int | None
    day: date | None
    """UTC."""
    name: str | None
    """The warehouse's or product's name."""
    receipts: int
    shipments: int
    """Units shipped (a positive number)."""
    transfers_in: int
    transfers_out: int
    """Units transferred out (a positive number)."""
    adjustments: int
    """Signed: found minus lost."""
    net: int
    """receipts - shipments + transfers_in - transfers_out + adjustments: what the balances changed by."""


class StockOutTimes(BaseModel):
    """How long a pair spent out of stock and running low in a report's period."""

    product_id: int
    product_name: str
    warehouse_id: int
    warehouse_name: str
    out_of_stock_seconds: float
    running_low_seconds: float
    changes: int
    """Its status changes in the period."""


class ProductIn(Input):
    id: Id | None = None
    """Your own id for it (a team bringing its numbering); absent: the next free one."""
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
    id: Id | None = None
    """Your own id for it; absent: the next free one."""
    name: Name


class Warehouse(BaseModel):
    id: int
    name: str
    created_at: datetime


class ApiKeyIn(Input):
    name: Name
    role: Role
    warehouses: Annotated[list[Id] | None, Field(min_length=1, max_length=1000)] = None
    """An operator key's warehouses: its writes touching any other are refused (403). Absent: every warehouse.
    Reads are not limited (see docs/api.md)."""

    @model_validator(mode="after")
    def _only_operators_are_limited(self) -> "ApiKeyIn":
        if self.warehouses is not None and self.role != Role.operator:
            raise ValueError("only operator keys write stock, so only they are limited to warehouses")
        return self


class ApiKey(BaseModel):
    id: int
    name: str
    role: Role
    key_prefix: str
    """The key's first characters, to tell keys apart."""
    warehouses: list[int] | None
    """The warehouses it may write at; null: every warehouse."""
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
