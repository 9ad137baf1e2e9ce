"""The durable store: tables, engine, migrations and the repositories that own all SQL."""
