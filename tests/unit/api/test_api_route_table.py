from __future__ import annotations

import pytest
from aiohttp import web

from producer_api.app import build_operations
from producer_api.openapi import Access, Operation, OperationTable


async def _handler(_request: web.Request) -> web.Response:
    return web.Response()


def test_every_operation_is_registered_with_and_without_slash() -> None:
    table = build_operations()
    app = web.Application()
    table.register(app.router)
    canonical = {
        (r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None
    }
    for op in table.operations:
        assert (op.method, op.path) in canonical
        if op.path != "/":  # the page at / has no second form
            assert (op.method, op.path + "/") in canonical
    spec = table.spec("t", "1")
    documented = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert documented == {(op.method, op.path) for op in table.operations}


def test_access_levels() -> None:
    table = build_operations()
    assert table.access_for("GET", "/health/") is Access.PUBLIC
    assert table.access_for("HEAD", "/health") is Access.PUBLIC
    assert table.access_for("GET", "/transcribe/{job_id}") is Access.KEY
    assert table.access_for("POST", "/admin/errors/{error_id}/resolve/") is Access.ADMIN
    assert table.access_for("GET", "/nope") is None
    spec = table.spec("t", "1")
    admin = spec["paths"]["/admin/errors"]["get"]
    assert {"401", "403", "429"} <= set(admin["responses"])
    assert "security" not in spec["paths"]["/health"]["get"]


def test_duplicates_are_refused() -> None:
    table = OperationTable()
    op = Operation("GET", "/x", _handler, "x", "t", Access.PUBLIC)
    table.add(op)
    with pytest.raises(ValueError, match="declared twice"):
        table.add(Operation("GET", "/x/", _handler, "x", "t", Access.PUBLIC))
