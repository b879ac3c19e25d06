"""Background jobs: the `jobs` table is the queue; handlers live in each domain's tasks.py."""
