"""HNSW indexes built with ef_construction 128 (pgvector's default is 64).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-22

pgvector filters an HNSW scan by user only after the fact, so a large user's nearest
neighbours must be found among everyone's. With the default graph (m 16, ef_construction
64), 1,000,000 clustered vectors and the largest four users (2-10% of the table), recall@10
plateaued at 0.97-1.00 per user whatever ef_search; built with ef_construction 128 it was
1.000 for each of them at ef_search 400 and 800, with a median query about 1 ms slower
(docs/benchmarks.md). The build takes about 1.8 times as long (546 against 300 s at 1M
vectors on 2 cores).

REINDEX rebuilds each index in place and blocks writes to its table while it runs: on a
large existing installation, run this migration in a quiet hour.
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

INDEXES = ("vec_minilm_384_hnsw", "vec_openai_1536_hnsw")
EF_CONSTRUCTION = 128


def upgrade() -> None:
    for index in INDEXES:
        op.execute(f"ALTER INDEX {index} SET (ef_construction = {EF_CONSTRUCTION})")
        op.execute(f"REINDEX INDEX {index}")


def downgrade() -> None:
    for index in INDEXES:
        op.execute(f"ALTER INDEX {index} RESET (ef_construction)")
        op.execute(f"REINDEX INDEX {index}")
