"""Storage backends for the store: the interface (`base`) and the in-memory backend (`memory`)."""

from .base import SessionRecord, StorageBackend, VariableRecord
from .memory import MemoryBackend

__all__ = ["MemoryBackend", "SessionRecord", "StorageBackend", "VariableRecord"]
