"""Storage backends behind the store: the records and the unit-of-work interface (`base`), the
in-memory default (`memory`), a copying test backend (`copying`), SQLite (`sqlite`), and
`open_storage`, which picks one from the `--storage` option (`factory`)."""

from sidecar.storage.base import Conflict, SessionRecord, Storage, StorageError, Unit, VariableRecord

__all__ = ["Conflict", "SessionRecord", "Storage", "StorageError", "Unit", "VariableRecord"]
