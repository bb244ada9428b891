"""The application database's Alembic migrations: `env.py` and one module
per revision in `versions/`. Run them with `chorus db upgrade` (or
`store.schema.upgrade`); nothing here is imported by the application."""
