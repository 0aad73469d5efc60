"""`python -m db verify` and `python -m db load` as an operator runs them."""

import re

import asyncpg
import pytest

from tests.integration.test_migrations import run_db_cli

pytestmark = pytest.mark.integration


async def test_load_writes_what_it_says_and_verify_finds_it_consistent(
    database_url: str, db: asyncpg.Connection
) -> None:
    code, out, err = await run_db_cli(
        database_url, "load", "--operations", "3000", "--workers", "3", "--products", "20", "--warehouses", "3",
        "--batch", "200", "--seed", "1",
    )  # fmt: skip
    assert code == 0, err
    assert "operations written: 3,000" in out and "rejected operations: 0" in out
    assert re.search(r"^peak memory: \d+ MB$", out, re.MULTILINE), out
    assert "3,000/3,000 ops" in err  # the progress line's last state

    assert await db.fetchval("SELECT count(*) FROM warehouse_operations") == 3000
    changes = await db.fetchval("SELECT status_change_count()")
    assert f"status changes produced: {changes:,}" in out

    code, out, _ = await run_db_cli(database_url, "verify")
    assert code == 0 and "consistent" in out


async def test_verify_reports_a_balance_that_disagrees_with_the_ledger(
    database_url: str, db: asyncpg.Connection
) -> None:
    await db.execute("INSERT INTO products (id, name) VALUES (1, 'p'); INSERT INTO warehouses (id, name) "
                     "VALUES (1, 'w'); INSERT INTO warehouse_operations (product_id, warehouse_id, quantity) "
                     "VALUES (1, 1, 12)")  # fmt: skip
    await db.execute("UPDATE stock_balance SET quantity = 11")  # what a bug or a manual edit would do

    code, out, _ = await run_db_cli(database_url, "verify")

    assert code == 1
    assert "product 1 at warehouse 1: stored 11 available, operations give 12 available" in out
    assert "1 difference(s), 0 broken transfer(s)" in out


async def test_verify_reports_a_transfer_whose_legs_do_not_match(database_url: str, db: asyncpg.Connection) -> None:
    await db.execute("INSERT INTO products (id, name) VALUES (1, 'p'); INSERT INTO warehouses (id, name) "
                     "VALUES (1, 'a'), (2, 'b'); INSERT INTO warehouse_operations (product_id, warehouse_id, "
                     "quantity) VALUES (1, 1, 20)")  # fmt: skip
    await db.fetchval("SELECT transfer_stock(1, 1, 2, 5)")  # a whole transfer: fine
    # An inbound leg written by hand, without its outbound one: stock from nowhere, yet every balance matches
    # the ledger.
    lone = await db.fetchval(
        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type, transfer_id) "
        "VALUES (1, 2, 3, 'transfer_in', gen_random_uuid()) RETURNING transfer_id"
    )
    # Two legs that do not net to zero: 4 out, 6 in.
    uneven = await db.fetchval(
        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type, transfer_id) "
        "SELECT 1, w, q, t::operation_type, u FROM gen_random_uuid() AS u, "
        "(VALUES (1, -4, 'transfer_out'), (2, 6, 'transfer_in')) AS legs (w, q, t) RETURNING transfer_id"
    )

    code, out, _ = await run_db_cli(database_url, "verify")

    assert code == 1
    assert f"BROKEN TRANSFER transfer {lone}: 1 leg(s), 0 outbound, 1 product(s), 1 warehouse(s), net +3" in out
    assert f"BROKEN TRANSFER transfer {uneven}: 2 leg(s), 1 outbound, 1 product(s), 2 warehouse(s), net +2" in out
    assert "0 difference(s), 2 broken transfer(s)" in out


@pytest.mark.parametrize("args", [["--operations", "0"], ["--workers", "-1"], ["--batch", "many"]])
async def test_load_refuses_bad_arguments_and_writes_nothing(
    database_url: str, db: asyncpg.Connection, args: list[str]
) -> None:
    code, _, err = await run_db_cli(database_url, "load", *args)
    assert code == 2 and "error: argument" in err
    assert await db.fetchval("SELECT count(*) FROM products") == 0
