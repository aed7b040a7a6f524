"""The control database: what instances sharing it keep there (the job board, download
tickets, the change feed, its own id for stores' markers, the audit trail, the schedule
ledger and the audit anchor), one module each, on one connection pool (database.py)."""
