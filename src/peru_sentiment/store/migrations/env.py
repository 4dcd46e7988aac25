"""Alembic's environment: the engine comes from :func:`peru_sentiment.store.database.upgrade`."""

from alembic import context

from peru_sentiment.store.models import Base

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
