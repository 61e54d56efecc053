"""SQLModel tables of FieldCRM. Importing this package registers every table on `metadata`."""

from models.activity import Feedback, HandledUpdate, Interaction, Purchase
from models.audit import AuditLog
from models.common import (
    DecisionRole,
    DictionaryKind,
    FeedbackKind,
    FeedbackStatus,
    InteractionKind,
    OutboxKind,
    OutboxStatus,
    PaymentStatus,
    ReminderKind,
    ReminderStatus,
    Role,
    Stage,
    as_utc,
    metadata,
    today_in,
    utcnow,
)
from models.customer import ContactPerson, Customer
from models.dictionary import ContactStrategy, DictionaryEntry, PurchaseStrategy
from models.invite import Invite
from models.reminder import OutboxMessage, Reminder
from models.report import ReportChange, ReportContactChange, ReportCustomerChange, ReportSnapshot
from models.token import ApiToken
from models.user import User

__all__ = [
    "ApiToken", "AuditLog", "ContactPerson", "ContactStrategy", "Customer", "DecisionRole", "DictionaryEntry",
    "DictionaryKind", "Feedback", "FeedbackKind", "FeedbackStatus", "HandledUpdate", "Interaction", "InteractionKind",
    "Invite", "OutboxKind", "OutboxMessage", "OutboxStatus", "PaymentStatus", "Purchase", "PurchaseStrategy",
    "Reminder", "ReminderKind", "ReportChange", "ReportContactChange", "ReportCustomerChange", "ReportSnapshot",
    "ReminderStatus", "Role", "Stage", "User",
    "as_utc", "metadata", "today_in", "utcnow",
]
