"""The operator's consistency check: recompute balances and statuses from the ledger and compare; check that
every transfer's legs match."""

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from db.queries import queries


@dataclass(frozen=True)
class Difference:
    product_id: int
    warehouse_id: int
    expected_quantity: int
    stored_quantity: int | None
    expected_status: str
    stored_status: str | None

    def describe(self) -> str:
        stored = "no balance row" if self.stored_quantity is None else f"{self.stored_quantity} {self.stored_status}"
        return (
            f"product {self.product_id} at warehouse {self.warehouse_id}: stored {stored}, "
            f"operations give {self.expected_quantity} {self.expected_status}"
        )


@dataclass(frozen=True)
class BrokenTransfer:
    transfer_id: UUID
    legs: int
    outbound: int
    products: int
    warehouses: int
    net: int

    def describe(self) -> str:
        return (
            f"transfer {self.transfer_id}: {self.legs} leg(s), {self.outbound} outbound, "
            f"{self.products} product(s), {self.warehouses} warehouse(s), net {self.net:+d}; "
            "a transfer is one outbound and one inbound leg of one product between two warehouses, netting to 0"
        )


async def differences(conn: asyncpg.Connection) -> list[Difference]:
    rows = await conn.fetch(queries("verify")["differences"])
    return [Difference(**dict(row)) for row in rows]


async def broken_transfers(conn: asyncpg.Connection) -> list[BrokenTransfer]:
    rows = await conn.fetch(queries("verify")["broken_transfers"])
    return [BrokenTransfer(**dict(row)) for row in rows]


async def summary(conn: asyncpg.Connection) -> asyncpg.Record:
    row = await conn.fetchrow(queries("verify")["summary"])
    assert row is not None  # an aggregate query always returns one row
    return row
