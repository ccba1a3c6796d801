"""Registers the PostgreSQL store with IMMP's plugin discovery (imported only when used)."""

import immp


@immp.hookimpl
def register_stores(register):
    register("postgresql", "immp_store_postgres._store.PostgresStore")
    register("postgres", "immp_store_postgres._store.PostgresStore")
