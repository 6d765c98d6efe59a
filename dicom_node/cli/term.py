"""The command line's two consoles, its exit codes and its one way to print rows.

Every command prints through this module's consoles, looked up when it prints
(``term.out.print(...)``, never ``from dicom_node.cli.term import out``), so that a test
can swap them for wider ones in one place.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

#: Messages, progress and errors (standard error).
console = Console(stderr=True, soft_wrap=True)
#: Results (standard output).
out = Console(soft_wrap=True)

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def render(
    rows: list[dict[str, Any]],
    fmt: str,
    columns: Sequence[str],
    title: str,
    fields: Sequence[str],
) -> None:
    """Print rows as JSON, CSV (every field) or a table (``columns`` only)."""
    if fmt == "json":
        out.print_json(json.dumps(rows, default=str))
        return
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(fields))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
            )
        sys.stdout.write(buffer.getvalue())
        return
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*["" if row.get(c) is None else escape(str(row.get(c))) for c in columns])
    out.print(table)
    if not rows:
        out.print("(none)")
