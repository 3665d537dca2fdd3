-- One round trip per audit event instead of three. The append used to be: the track's
-- advisory lock, a read of the chain's head, and the INSERT, each a statement of its own and
-- so a round trip, twelve of the 55 an issuance made. This function does the three in one
-- call. The client computes everything of the event's canonical array that does not depend on
-- the head (`p_tail`, see `AuditEvent::chain_tail`); the function finishes the hash over
--   prev_hash || '["' || track || '",' || seq || ',' || p_tail
-- which is the same bytes as `audit::chain_hash` for the two tracks' names (JSON leaves
-- "machine" and "human" unescaped), and `dualca audit verify` recomputes every hash in Rust.
--
-- The head is read after the lock is held: in READ COMMITTED each statement of a VOLATILE
-- function takes a new snapshot, so the SELECT sees the event the previous holder committed.
-- The lock is the same transaction-scoped advisory lock, on the same key, as before, so
-- processes of the older version and of this one still take turns during a rolling upgrade.
CREATE FUNCTION dualca_audit_append(
    p_track TEXT,
    p_lock_key BIGINT,
    p_at BIGINT,
    p_actor TEXT,
    p_action TEXT,
    p_subject TEXT,
    p_details TEXT,
    p_tail TEXT
) RETURNS BIGINT
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head_seq BIGINT;
    head_hash TEXT;
    new_seq BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock_key);
    SELECT seq, hash INTO head_seq, head_hash
        FROM audit_events WHERE track = p_track ORDER BY seq DESC LIMIT 1;
    IF NOT FOUND THEN
        head_seq := 0;
        head_hash := '0000000000000000000000000000000000000000000000000000000000000000';
    END IF;
    new_seq := head_seq + 1;
    INSERT INTO audit_events (track, seq, at, actor, action, subject, details, prev_hash, hash)
    VALUES (
        p_track, new_seq, p_at, p_actor, p_action, p_subject, p_details, head_hash,
        encode(sha256(convert_to(head_hash || '["' || p_track || '",' || new_seq || ',' || p_tail, 'UTF8')), 'hex')
    );
    RETURN new_seq;
END
$$;
