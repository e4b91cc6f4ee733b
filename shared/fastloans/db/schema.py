"""The tables of the pipeline, as SQLAlchemy Core metadata (migrations create them)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = MetaData()

Money = Numeric(14, 2)
STATUSES = ("pending", "approved", "rejected", "referred", "withdrawn")
# Who recorded a decision: the policy (the approval service), or a reviewer deciding a referred revision.
DECIDERS = ("policy", "review")

tenants = Table(
    "tenants",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # This tenant's own rate limit; NULL takes RATE_LIMIT_PER_SECOND / RATE_LIMIT_BURST.
    Column("rate_limit_per_second", Float),
    Column("rate_limit_burst", Integer),
    CheckConstraint(
        "(rate_limit_per_second IS NULL OR rate_limit_per_second >= 0) AND "
        "(rate_limit_burst IS NULL OR rate_limit_burst >= 1)",
        name="tenants_rate_limit",
    ),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("tenant_id", UUID(as_uuid=True), ForeignKey("tenants.id"), nullable=False),
    Column("prefix", Text, nullable=False),
    Column("key_hash", LargeBinary, nullable=False, unique=True),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("label", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
    # The person behind a reviewer's or supervisor's key, recorded with every review action.
    Column("actor", Text),
)

loan_applications = Table(
    "loan_applications",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("tenant_id", UUID(as_uuid=True), ForeignKey("tenants.id"), nullable=False),
    Column("revision", Integer, nullable=False, server_default=text("1")),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("applicant_name", Text, nullable=False),
    Column("credit_score", Integer, nullable=False),
    Column("loan_amount", Money, nullable=False),
    Column("loan_purpose", Text, nullable=False),
    Column("monthly_income", Money, nullable=False),
    Column("monthly_debt", Money, nullable=False),
    Column("employment_status", Text, nullable=False),
    Column("risk_score", Integer),
    Column("is_approved", Boolean),
    Column("reasons", JSONB),
    Column("policy_version", Text),
    # The current decision's counteroffer and smallest actionable changes (fastloans.policy.engine), or NULL.
    Column("counteroffer", JSONB),
    Column("what_would_change", JSONB),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    Column("withdrawn_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Who made the current decision ("policy" or "review"), the revision's review case and the reviewer's reasons.
    Column("decided_by", Text),
    Column("review_case_id", UUID(as_uuid=True)),
    Column("review_reasons", JSONB),
    CheckConstraint(f"status IN {STATUSES!r}", name="loan_applications_status"),
    CheckConstraint("monthly_income > 0 AND loan_amount > 0 AND monthly_debt >= 0", name="loan_applications_money"),
    Index("loan_applications_tenant_created", "tenant_id", "created_at", "id"),
    Index("loan_applications_submitted", "submitted_at"),
)

loan_decisions = Table(
    "loan_decisions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("application_id", UUID(as_uuid=True), ForeignKey("loan_applications.id"), nullable=False),
    Column("tenant_id", UUID(as_uuid=True), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("risk_score", Integer, nullable=False),
    Column("reasons", JSONB, nullable=False),
    Column("policy_name", Text, nullable=False),
    Column("policy_version", Text, nullable=False),
    Column("policy_hash", Text, nullable=False),
    Column("challenger", JSONB),
    # {loan_amount, risk_score, outcome, binding_rule} or NULL; [{fact, current, suggested, ...}] or NULL.
    Column("counteroffer", JSONB),
    Column("what_would_change", JSONB),
    Column("submitted_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
    # A revision's policy decision, and a reviewer's final decision of a referred one (with its case).
    Column("decided_by", Text, nullable=False, server_default=text("'policy'")),
    Column("review_case_id", UUID(as_uuid=True)),
    UniqueConstraint("application_id", "revision", "decided_by", name="loan_decisions_once_per_revision_and_decider"),
    CheckConstraint(f"decided_by IN {DECIDERS!r}", name="loan_decisions_decided_by"),
    Index("loan_decisions_tenant_decided", "tenant_id", "decided_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("topic", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", UUID(as_uuid=True), ForeignKey("tenants.id"), nullable=False),
    Column("key", Text, nullable=False),
    Column("request_hash", Text, nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("tenant_id", "key"),
    Index("idempotency_keys_created", "created_at"),
)

# Requests each gateway process accepted per tenant and rate-limit window (window_start and expires in
# milliseconds since the epoch); UNLOGGED, on the primary only.
rate_limit_counts = Table(
    "rate_limit_counts",
    metadata,
    Column("tenant_id", UUID(as_uuid=True), nullable=False),
    Column("window_start", BigInteger, nullable=False),
    Column("process", UUID(as_uuid=True), nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant_id", "window_start", "process"),
    prefixes=["UNLOGGED"],
)

# Webhook endpoints per tenant; signing secrets are stored sealed (fastloans.webhooks.SecretBox), and during a
# rotation the previous one keeps signing until previous_secret_expires_at.
WEBHOOK_DELIVERY_STATUSES = ("pending", "delivered", "failed")
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("tenant_id", UUID(as_uuid=True), ForeignKey("tenants.id"), nullable=False),
    Column("url", Text, nullable=False),
    Column("description", Text, nullable=False, server_default=text("''")),
    Column("event_types", ARRAY(Text), nullable=False),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    # Deliveries for one application go out in revision order unless the endpoint opts out (false).
    Column("ordered", Boolean, nullable=False, server_default=text("true")),
    Column("disabled_reason", Text),
    Column("secret", LargeBinary, nullable=False),
    Column("previous_secret", LargeBinary),
    Column("previous_secret_expires_at", DateTime(timezone=True)),
    # The first failed attempt since the last success; five days of failures disable the endpoint.
    Column("failing_since", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # POST …/verify asks a dispatcher to check the receiver; its report, and when the receiver last passed.
    Column("verification_requested_at", DateTime(timezone=True)),
    Column("verification", JSONB),
    Column("verified_at", DateTime(timezone=True)),
    Index("webhook_endpoints_tenant", "tenant_id", "created_at"),
)

# One row per (endpoint, event): the unique key makes a redelivered event harmless. Workers claim due rows with
# FOR UPDATE SKIP LOCKED and hold them for a lease; retries are rescheduled here, never on a Kafka topic.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("endpoint_id", UUID(as_uuid=True), ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("event_key", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("application_id", UUID(as_uuid=True)),
    Column("revision", Integer, nullable=False, server_default=text("0")),
    Column("body", LargeBinary, nullable=False),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
    Column("lease_until", DateTime(timezone=True)),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
    Column("delivered_at", DateTime(timezone=True)),
    UniqueConstraint("endpoint_id", "event_key", name="webhook_deliveries_once_per_event"),
    CheckConstraint(f"status IN {WEBHOOK_DELIVERY_STATUSES!r}", name="webhook_deliveries_status"),
    Index(
        "webhook_deliveries_endpoint_due",
        "endpoint_id",
        "next_attempt_at",
        "id",
        postgresql_where=text("status = 'pending'"),
    ),
    Index(
        "webhook_deliveries_pending_revisions",
        "endpoint_id",
        "application_id",
        "revision",
        "id",
        postgresql_where=text("status = 'pending'"),
    ),
    Index("webhook_deliveries_endpoint_created", "endpoint_id", "created_at"),
    # The deliveries in flight, which the claim counts per endpoint (migration 0009).
    Index(
        "webhook_deliveries_leased",
        "endpoint_id",
        "lease_until",
        postgresql_where=text("status = 'pending' AND lease_until IS NOT NULL"),
    ),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("delivery_id", BigInteger, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("attempted_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
    Column("status_code", Integer),
    Column("latency_ms", Float, nullable=False),
    Column("error", Text),
    Index("webhook_attempts_delivery", "delivery_id", "attempted_at"),
)

# The creditor details a tenant's adverse-action notices print (`fastloans tenants notice-settings`).
tenant_notice_settings = Table(
    "tenant_notice_settings",
    metadata,
    Column("tenant_id", UUID(as_uuid=True), ForeignKey("tenants.id"), primary_key=True),
    Column("creditor_name", Text, nullable=False),
    Column("address", Text, nullable=False),
    Column("supervising_agency", Text, nullable=False),
    Column("contact", Text, nullable=False),
    Column("score_source", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# Each adverse-action notice as first rendered, once per decision: the HTML is the record (the PDF is made
# from it again on request), so the same notice can be produced years later whatever the template becomes.
adverse_action_notices = Table(
    "adverse_action_notices",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("decision_id", BigInteger, ForeignKey("loan_decisions.id"), nullable=False),
    Column("tenant_id", UUID(as_uuid=True), nullable=False),
    Column("application_id", UUID(as_uuid=True), nullable=False),
    Column("template_version", Text, nullable=False),
    Column("content_sha256", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
    Column("sent_at", DateTime(timezone=True)),
    UniqueConstraint("decision_id", name="adverse_action_notices_once_per_decision"),
    Index("adverse_action_notices_application", "application_id"),
)

# A referred revision's review case (fastloans.reviews: states, transitions, four eyes), opened by the recorder
# with the referral's recommendation, deadlines and packet; every change is checked against `state` and `version`.
REVIEW_STATES = (
    "open",
    "claimed",
    "awaiting_approval",
    "waiting_for_information",
    "decided",
    "withdrawn",
    "superseded",
)
review_cases = Table(
    "review_cases",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("tenant_id", UUID(as_uuid=True), ForeignKey("tenants.id"), nullable=False),
    Column("application_id", UUID(as_uuid=True), ForeignKey("loan_applications.id"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("state", Text, nullable=False, server_default=text("'open'")),
    Column("version", Integer, nullable=False, server_default=text("1")),
    Column("recommendation", Text),
    Column("risk_score", Integer, nullable=False),
    Column("policy_version", Text, nullable=False),
    Column("second_person_for", ARRAY(Text), nullable=False),
    Column("packet", JSONB, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("escalate_at", DateTime(timezone=True), nullable=False),
    Column("claimed_by", Text),
    Column("claim_expires_at", DateTime(timezone=True)),
    Column("outcome", Text),
    Column("reason_codes", ARRAY(Text)),
    Column("note", Text),
    Column("decided_by", Text),
    Column("override", Boolean),
    Column("approved_by", Text),
    Column("information_requested", JSONB),
    # While waiting for information the deadline's clock stands still from here.
    Column("clock_stopped_at", DateTime(timezone=True)),
    Column("closed_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.clock_timestamp()),
    UniqueConstraint("application_id", "revision", name="review_cases_once_per_revision"),
    CheckConstraint(f"state IN {REVIEW_STATES!r}", name="review_cases_state"),
    Index("review_cases_queue", "tenant_id", "due_at", "id"),
)

# Every action on a case, append-only (a trigger refuses UPDATE, TRUNCATE and a DELETE within the 25 months of
# retention) and hash-chained: `hash` = sha256(previous_hash, the entry's canonical content) (fastloans.reviews).
review_history = Table(
    "review_history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("case_id", UUID(as_uuid=True), ForeignKey("review_cases.id"), nullable=False),
    Column("tenant_id", UUID(as_uuid=True), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("action", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("details", JSONB, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("previous_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
    UniqueConstraint("case_id", "seq", name="review_history_once_per_seq"),
    Index("review_history_tenant", "tenant_id", "case_id", "seq"),
)
