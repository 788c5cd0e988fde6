"""Alembic migrations, shipped inside the wheel so `prismq-queue db upgrade` works anywhere."""
