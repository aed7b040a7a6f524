"""Where backups are kept: implementations of `pgkeep.core.ports.Storage`."""

from pgkeep.storage.local import LocalStorage
from pgkeep.storage.memory import MemoryStorage

__all__ = ["LocalStorage", "MemoryStorage"]
