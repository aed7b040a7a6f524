"""pgkeep's own state on this machine, when no control database is named (PGKEEP_STATE_DIR)."""
