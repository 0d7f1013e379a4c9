"""
The gateway's view of its configuration: an immutable snapshot built from
the stored entities, swapped in one assignment when the configuration
changes, so that no request ever sees half a table.
"""
from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class ConfigurationData:
    """
    Every stored entity the data path needs, read in one transaction.

    @ivar version: the configuration version these rows belong to.
    @ivar services: service records (Kong-shaped dicts).
    @ivar routes: route records.
    @ivar plugins: plugin records.
    """

    version: int
    services: tuple[dict[str, Any], ...] = ()
    routes: tuple[dict[str, Any], ...] = ()
    plugins: tuple[dict[str, Any], ...] = ()
