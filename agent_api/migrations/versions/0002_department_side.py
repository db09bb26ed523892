"""Department side: venue and inspector registries, conflicts, plans, draws, picks, results, credit history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Times are ISO 8601 text with their UTC offset, as in 0001; calendar dates are DATE.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIME = sa.String(length=40)


def upgrade() -> None:
    op.create_table('inspectors',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('badge', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('sex', sa.String(length=8), nullable=False),
    sa.Column('unit', sa.String(length=200), nullable=False),
    sa.Column('post', sa.String(length=100), nullable=False),
    sa.Column('jurisdiction', sa.String(length=64), nullable=False),
    sa.Column('qualified', sa.Boolean(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', TIME, nullable=False),
    sa.Column('updated_at', TIME, nullable=False),
    sa.CheckConstraint("kind IN ('officer', 'third_party')", name=op.f('ck_inspectors_kind')),
    sa.CheckConstraint("sex IN ('male', 'female')", name=op.f('ck_inspectors_sex')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_inspectors')),
    sa.UniqueConstraint('badge', name=op.f('uq_inspectors_badge'))
    )
    op.create_index('ix_inspectors_jurisdiction', 'inspectors', ['jurisdiction'])

    op.create_table('plans',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_number', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('jurisdiction', sa.String(length=64), nullable=False),
    sa.Column('authority', sa.String(length=200), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('period', sa.String(length=8), nullable=False),
    sa.Column('rounds', sa.Integer(), nullable=False),
    sa.Column('ratio', sa.String(length=16), nullable=False),
    sa.Column('blacklist_ratio', sa.String(length=16), nullable=False),
    sa.Column('inspectors_per_venue', sa.Integer(), nullable=False),
    sa.Column('min_pool', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', TIME, nullable=False),
    sa.CheckConstraint("period IN ('year', 'month')", name=op.f('ck_plans_period')),
    sa.CheckConstraint('inspectors_per_venue >= 2', name=op.f('ck_plans_inspectors_per_venue')),
    sa.CheckConstraint('min_pool >= 4', name=op.f('ck_plans_min_pool')),
    sa.CheckConstraint('rounds >= 1', name=op.f('ck_plans_rounds')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plans')),
    sa.UniqueConstraint('jurisdiction', 'year', name=op.f('uq_plans_jurisdiction')),
    sa.UniqueConstraint('plan_number', name=op.f('uq_plans_plan_number'))
    )
    op.create_table('venues',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('credit_code', sa.String(length=18), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('address', sa.String(length=400), nullable=False),
    sa.Column('legal_rep', sa.String(length=100), nullable=False),
    sa.Column('industry', sa.String(length=100), nullable=False),
    sa.Column('jurisdiction', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('site_id', sa.String(length=200), nullable=True),
    sa.Column('code_check', sa.String(length=16), nullable=False),
    sa.Column('code_confirmed_by', sa.String(length=100), nullable=True),
    sa.Column('code_confirmed_at', TIME, nullable=True),
    sa.Column('blacklisted', sa.Boolean(), nullable=False),
    sa.Column('blacklist_reason', sa.Text(), nullable=True),
    sa.Column('blacklisted_on', sa.Date(), nullable=True),
    sa.Column('created_at', TIME, nullable=False),
    sa.Column('updated_at', TIME, nullable=False),
    sa.CheckConstraint("code_check IN ('ok', 'mismatch', 'confirmed')", name=op.f('ck_venues_code_check')),
    sa.CheckConstraint("status IN ('open', 'closed', 'revoked')", name=op.f('ck_venues_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_venues')),
    sa.UniqueConstraint('credit_code', name=op.f('uq_venues_credit_code')),
    sa.UniqueConstraint('site_id', name=op.f('uq_venues_site_id'))
    )
    op.create_index('ix_venues_jurisdiction', 'venues', ['jurisdiction'])

    op.create_table('conflicts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('inspector_id', sa.Integer(), nullable=False),
    sa.Column('venue_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('declared_on', sa.Date(), nullable=False),
    sa.Column('created_at', TIME, nullable=False),
    sa.ForeignKeyConstraint(['inspector_id'], ['inspectors.id'], name=op.f('fk_conflicts_inspector_id_inspectors')),
    sa.ForeignKeyConstraint(['venue_id'], ['venues.id'], name=op.f('fk_conflicts_venue_id_venues')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conflicts')),
    sa.UniqueConstraint('inspector_id', 'venue_id', name=op.f('uq_conflicts_inspector_id'))
    )
    op.create_index('ix_conflicts_venue_id', 'conflicts', ['venue_id'])

    op.create_table('credit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('venue_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('result_type', sa.String(length=40), nullable=True),
    sa.Column('task_number', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('event_on', sa.Date(), nullable=False),
    sa.Column('recorded_by', sa.String(length=100), nullable=False),
    sa.Column('recorded_at', TIME, nullable=False),
    sa.CheckConstraint("kind IN ('result', 'result_changed', 'blacklist_add', 'blacklist_remove')", name=op.f('ck_credit_events_kind')),
    sa.ForeignKeyConstraint(['venue_id'], ['venues.id'], name=op.f('fk_credit_events_venue_id_venues')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_events'))
    )
    op.create_index('ix_credit_events_venue_id', 'credit_events', ['venue_id'])

    op.create_table('draws',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('round_no', sa.Integer(), nullable=False),
    sa.Column('task_number', sa.String(length=64), nullable=False),
    sa.Column('task_name', sa.String(length=200), nullable=False),
    sa.Column('check_type', sa.String(length=16), nullable=False),
    sa.Column('authority', sa.String(length=200), nullable=False),
    sa.Column('check_start', sa.Date(), nullable=False),
    sa.Column('check_end', sa.Date(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('algorithm', sa.String(length=32), nullable=False),
    sa.Column('snapshot', sa.Text(), nullable=False),
    sa.Column('snapshot_sha256', sa.String(length=64), nullable=False),
    sa.Column('announcement', sa.Text(), nullable=False),
    sa.Column('commitment', sa.String(length=64), nullable=False),
    sa.Column('secret', sa.String(length=64), nullable=False),
    sa.Column('beacon_name', sa.Text(), nullable=True),
    sa.Column('beacon_value', sa.Text(), nullable=True),
    sa.Column('witnesses', sa.Text(), nullable=True),
    sa.Column('seed', sa.String(length=64), nullable=True),
    sa.Column('replacements', sa.Text(), nullable=False),
    sa.Column('bundle', sa.Text(), nullable=True),
    sa.Column('prepared_by', sa.String(length=100), nullable=False),
    sa.Column('prepared_at', TIME, nullable=False),
    sa.Column('drawn_by', sa.String(length=100), nullable=True),
    sa.Column('drawn_at', TIME, nullable=True),
    sa.Column('published_by', sa.String(length=100), nullable=True),
    sa.Column('published_at', TIME, nullable=True),
    sa.CheckConstraint("check_type IN ('undirected', 'directed')", name=op.f('ck_draws_check_type')),
    sa.CheckConstraint("state IN ('prepared', 'drawn', 'published')", name=op.f('ck_draws_state')),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_draws_plan_id_plans')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_draws')),
    sa.UniqueConstraint('plan_id', 'round_no', name=op.f('uq_draws_plan_id')),
    sa.UniqueConstraint('task_number', name=op.f('uq_draws_task_number'))
    )
    op.create_table('plan_reductions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('round_no', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('recorded_by', sa.String(length=100), nullable=False),
    sa.Column('recorded_at', TIME, nullable=False),
    sa.CheckConstraint("kind IN ('joint', 'cross_department', 'suspended')", name=op.f('ck_plan_reductions_kind')),
    sa.ForeignKeyConstraint(['plan_id'], ['plans.id'], name=op.f('fk_plan_reductions_plan_id_plans')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan_reductions')),
    sa.UniqueConstraint('plan_id', 'round_no', name=op.f('uq_plan_reductions_plan_id'))
    )
    op.create_table('draw_venues',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('draw_id', sa.Integer(), nullable=False),
    sa.Column('venue_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('ticket', sa.String(length=64), nullable=False),
    sa.Column('inspectors', sa.Text(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint("kind IN ('regular', 'blacklist')", name=op.f('ck_draw_venues_kind')),
    sa.ForeignKeyConstraint(['draw_id'], ['draws.id'], name=op.f('fk_draw_venues_draw_id_draws')),
    sa.ForeignKeyConstraint(['venue_id'], ['venues.id'], name=op.f('fk_draw_venues_venue_id_venues')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_draw_venues')),
    sa.UniqueConstraint('draw_id', 'venue_id', name=op.f('uq_draw_venues_draw_id'))
    )
    op.create_index('ix_draw_venues_venue_id', 'draw_venues', ['venue_id'])

    op.create_table('results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('draw_venue_id', sa.Integer(), nullable=False),
    sa.Column('result_type', sa.String(length=40), nullable=False),
    sa.Column('completed_on', sa.Date(), nullable=False),
    sa.Column('remark', sa.Text(), nullable=False),
    sa.Column('report_id', sa.String(length=36), nullable=True),
    sa.Column('deadline', sa.Date(), nullable=False),
    sa.Column('deadline_estimated', sa.Boolean(), nullable=False),
    sa.Column('recorded_by', sa.String(length=100), nullable=False),
    sa.Column('recorded_at', TIME, nullable=False),
    sa.Column('published_at', TIME, nullable=True),
    sa.ForeignKeyConstraint(['draw_venue_id'], ['draw_venues.id'], name=op.f('fk_results_draw_venue_id_draw_venues')),
    sa.ForeignKeyConstraint(['report_id'], ['reports.report_id'], name=op.f('fk_results_report_id_reports')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_results')),
    sa.UniqueConstraint('draw_venue_id', name=op.f('uq_results_draw_venue_id'))
    )
    op.create_table('result_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('result_id', sa.Integer(), nullable=False),
    sa.Column('from_type', sa.String(length=40), nullable=False),
    sa.Column('to_type', sa.String(length=40), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('changed_by', sa.String(length=100), nullable=False),
    sa.Column('changed_at', TIME, nullable=False),
    sa.ForeignKeyConstraint(['result_id'], ['results.id'], name=op.f('fk_result_changes_result_id_results')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_result_changes'))
    )
    op.create_index('ix_result_changes_result_id', 'result_changes', ['result_id'])



def downgrade() -> None:
    for table in ("result_changes", "results", "draw_venues", "plan_reductions", "draws", "credit_events",
                  "conflicts", "venues", "plans", "inspectors"):
        op.drop_table(table)  # their indexes go with them
