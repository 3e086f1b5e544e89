"""Adapter references and statuses: the one way an adapter version is named and parsed, and its lifecycle states.

Contract: `parse_adapter_ref(text)` reads `NAME` (no version: the alias, which follows the active version, else the
newest), `NAME@vN`, `NAME@N`, `NAME:vN` and `NAME:N` into an `AdapterVersion(name, version)`; it returns None for
text that is none of these (an id, a path). `str(AdapterVersion)` and `versioned_name(name, version)` write the one
canonical form, `NAME@vN`, which is also the engine identity of a version. `AdapterStatus` is what the `adapters`
table's `status` column holds: every registered version starts as `candidate`; activating one makes it `active` and
the previously active version of that name `inactive`. Nothing else is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

_REF = re.compile(r"^(?P<name>[^:@]+)(?:[:@]v?(?P<version>\d+))?$")


class AdapterStatus(StrEnum):
    CANDIDATE = "candidate"  # registered; not (yet) served under its alias
    ACTIVE = "active"  # the version the alias NAME serves
    INACTIVE = "inactive"  # was active; another version of the name was activated since


@dataclass(frozen=True)
class AdapterVersion:
    """A parsed adapter reference: a name and, when given, a version."""

    name: str
    version: int | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else versioned_name(self.name, self.version)


def versioned_name(name: str, version: int) -> str:
    """The canonical name of one version (`NAME@vN`), used by the API, the CLI and the engine."""
    return f"{name}@v{version}"


def parse_adapter_ref(text: str) -> AdapterVersion | None:
    """`NAME`, `NAME@vN`, `NAME@N`, `NAME:vN` or `NAME:N` as an `AdapterVersion`; None for anything else."""
    match = _REF.match(text.strip())
    if match is None:
        return None
    version = match["version"]
    return AdapterVersion(match["name"], int(version) if version else None)
