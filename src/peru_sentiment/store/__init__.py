"""The scored-feedback store: every prediction, its masked text and scores, in SQLite or PostgreSQL.

``models`` holds the tables, ``database`` opens and migrates a database
(Alembic migrations ship in ``migrations/``), ``writer`` persists predictions
off the request path in batches, and ``records`` turns predictions into rows.
"""
