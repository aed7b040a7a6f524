"""The domain: backups, their names, retention and the service. No HTTP, no subprocess here."""
