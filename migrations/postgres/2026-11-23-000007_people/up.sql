-- The human track's registry: people, how their identity was proofed, and their one-time
-- enrollment links.
CREATE TABLE people (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    employee_id TEXT NOT NULL,
    manager_email TEXT NOT NULL,
    status TEXT NOT NULL,
    proofing_level TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    left_at BIGINT
);
CREATE UNIQUE INDEX people_email ON people (email);
CREATE UNIQUE INDEX people_employee_id ON people (employee_id);

CREATE TABLE proofing_events (
    id TEXT PRIMARY KEY NOT NULL,
    person_id TEXT NOT NULL REFERENCES people (id),
    level TEXT NOT NULL,
    method TEXT NOT NULL,
    evidence TEXT NOT NULL,
    operator TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX proofing_events_person ON proofing_events (person_id, at);

CREATE TABLE enrollments (
    -- SHA-256 of the link token and of the code: neither is stored in the clear.
    token_hash TEXT PRIMARY KEY NOT NULL,
    person_id TEXT NOT NULL REFERENCES people (id),
    code_hash TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX enrollments_person ON enrollments (person_id);
CREATE INDEX accounts_person ON accounts (person_id);
CREATE INDEX certificates_person ON certificates (person_id, status);
