"""Mapping between the plain rows (db/rows.py) and SQL column values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from db.models import error_logs_table, jobs_table, results_table
from db.rows import ErrorLogRow, JobRow, ResultRow

JOB_COLUMNS: tuple[str, ...] = tuple(jobs_table.columns.keys())
RESULT_COLUMNS: tuple[str, ...] = tuple(results_table.columns.keys())
ERROR_COLUMNS: tuple[str, ...] = tuple(
    column.key
    for column in error_logs_table.columns
    if column.key not in {"id", "resolved", "resolved_at"}
)


def job_values(row: JobRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in JOB_COLUMNS}


def job_from_mapping(values: Mapping[Any, Any], result: ResultRow | None = None) -> JobRow:
    return JobRow(**{name: values[name] for name in JOB_COLUMNS}, result=result)


def result_values(row: ResultRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in RESULT_COLUMNS}


def result_from_mapping(values: Mapping[Any, Any]) -> ResultRow:
    return ResultRow(**{name: values[name] for name in RESULT_COLUMNS})


def error_values(row: ErrorLogRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in ERROR_COLUMNS}


def error_from_mapping(values: Mapping[Any, Any]) -> ErrorLogRow:
    return ErrorLogRow(**{name: values[name] for name in ERROR_COLUMNS})
