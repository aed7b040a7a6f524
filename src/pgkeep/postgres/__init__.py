"""Adapters for PostgreSQL: connection info, client tool choice, pg_dump, throwaway clusters."""
