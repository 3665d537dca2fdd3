DROP INDEX certificates_not_after;
DROP INDEX audit_events_at;
DROP INDEX audit_events_subject;
DROP TABLE revoked_tokens;
